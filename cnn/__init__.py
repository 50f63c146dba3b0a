"""NAO on CIFAR: the cell search space, its ops and networks, data pipelines, searches, training.

Modules: `search_space` (cells, op registry, spaces, named architectures, cell graphs), `ops` and
`model` (the fixed network), `supernet` (every candidate op, the cell as an int32 tensor),
`search_sampling` (which pool cell trains each step), `search_evaluator` (the NAO-WS
evaluator), `data` (CIFAR / synthetic input), `imagenet` (tfds or an image folder), `training`
(the train and evaluation steps of the final network and of the supernet, one class), `trainee`
(one architecture's epoch), `export` (SavedModel), `configs` (presets of the original scripts),
`cells` (published cells), and the commands `train_search` (NAO-WS), `train_search_nao` (NAO),
`train_final` and `evaluate`.
"""

import nao_tf  # noqa: F401,E402  (TensorFlow loads without its start-up lines)
