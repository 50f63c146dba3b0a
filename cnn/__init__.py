"""NAO on CIFAR: the cell search space, its ops and fixed network, data pipelines, final training.

Modules: `search_space` (cells, op registry, spaces, named architectures), `ops` and `model` (the
network), `data` (CIFAR / synthetic input), `training` (steps), `fit` (epoch loop, checkpoints),
`export` (SavedModel), `configs` (presets of the original scripts), `train_final` and `evaluate`
(commands).
"""
