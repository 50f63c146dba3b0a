"""nao_tf: the task-independent core of Neural Architecture Optimization (NAO).

The core knows architectures only as token sequences described by a `SearchSpace`; the CNN and RNN
tasks (packages `cnn` and `rnn`) plug their spaces and evaluators into it.

Importing the package imports TensorFlow without its C++ start-up lines (`runtime.startup`); task
packages import `nao_tf` first, so every command starts with its own output.
"""

from nao_tf.runtime import startup

startup.import_tensorflow()
