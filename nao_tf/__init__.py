"""nao_tf: the task-independent core of Neural Architecture Optimization (NAO).

The core knows architectures only as token sequences described by a `SearchSpace`; the CNN and RNN
tasks (packages `cnn` and `rnn`) plug their spaces and evaluators into it.
"""
