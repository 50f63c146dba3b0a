"""NAS-Bench-201 as a task of the three commands: its cells searched on CIFAR by NAO with weight
sharing (a supernet holding every op of every edge, `nb201.model`) or without it (every candidate
trained alone), and a found cell trained from scratch in the benchmark's network. Every pick is an
`arch` string of the benchmark's table, so its accuracy can be looked up (`bench/nb201_study.py`);
the commands themselves never read a table.

The data are the CNN task's CIFAR readers (`cnn.data`): the searches train on the training images
but the last `--num_valid`, and score cells on the first `--eval_images` of those held out; the
final training trains on all training images and reports the test set. The networks train with the
CNN task's `Trainer` and `CnnTrainee` (SGD, Nesterov momentum 0.9, one per-step cosine, weight
decay as PyTorch's: `--weight_decay` w added to the gradient).

Defaults are the benchmark's schedules (D-X-Y/AutoDL-Projects f46486e, `configs/nas-benchmark/`):
the supernet `algos/RANDOM.config` (250 epochs, batch 64, lr 0.025 -> 0.001, weight decay 5e-4,
gradient norm clipped to 5 as `exps/NAS-Bench-201-algos/RANDOM-NAS.py:49`), a candidate trained
alone `hyper-opts/12E.config` (12 epochs, batch 256, lr 0.1 -> 0), the final training
`hyper-opts/200E.config` (200 epochs); network C=16, N=5 (`RANDOM-NAS.sh`).
"""

import dataclasses
import os

import keras
import numpy as np
import tensorflow as tf

from cnn import data as data_lib
from cnn.trainee import CnnTrainee, LoopConfig
from cnn.training import OptimConfig, Trainer, disable_graph_optimizer
from nao_tf.algorithm.search_space import load_arch
from nao_tf.commands import cli
from nao_tf.commands.task import Candidates, Task
from nao_tf.common.errors import NaoError
from nao_tf.common.io import fingerprint
from nao_tf.runtime.standalone import build_lock
from nao_tf.runtime.train_loop import TraineeSupernet, train_epochs
from nao_tf.spaces.nasbench201 import NasBench201Space, network_costs
from nb201.model import Nb201Network, count_params

SPACE = NasBench201Space()
option = cli.option


@dataclasses.dataclass(frozen=True)
class Nb201Config:
    """The flags of all three commands (each command offers its part, `Nb201Task.configs`)."""

    arch: str = option("", "The cell: a NAS-Bench-201 string (|op~0|+|op~0|op~1|+|...|) or a "
                       "best_arch.json.", identity=True)
    dataset: str = option("cifar10", "Dataset.", data_lib.DATASETS, identity=True)
    data_dir: str = option("", "Directory with the python-pickle batches or a prepared "
                           "tensorflow-datasets directory (unused for synthetic).")
    data_source: str = option("auto", "How to read --data_dir.", data_lib.SOURCES)
    synthetic_images: int = option(1024, "Training images of --dataset=synthetic.", minimum=2)
    num_valid: int = option(5000, "Training images held out of the search's training; cells are "
                            "scored on them.", identity=True, minimum=1)
    channels: int = option(16, "C: channels of the first stage (2C, 4C after).", identity=True,
                           minimum=1)
    cells_per_stage: int = option(5, "N: cells per stage.", identity=True, minimum=1)
    sampling: str = option("pool", "The supernet's cell of each step: drawn from the NAO pool "
                           "(NAO-WS), or uniformly over the space (the benchmark's random "
                           "sampling with parameter sharing, RSPS).", ["pool", "uniform"],
                           identity=True)
    epochs: int = option(200, "Training epochs (the supernet: in all).", identity=True, minimum=1)
    eval_every_epochs: int = option(1, "The supernet: score the pool every k epochs (one "
                                    "controller round each); a network: evaluate every k "
                                    "epochs.", identity=True, minimum=1)
    batch_size: int = option(256, "Training batch.", identity=True, minimum=1)
    lr_max: float = option(0.1, "Learning rate at the start of the cosine.", identity=True)
    lr_min: float = option(0.0, "Learning rate at its end.", identity=True, minimum=0.0)
    weight_decay: float = option(5e-4, "Weight decay (PyTorch's: added to the gradient).",
                                 identity=True, minimum=0.0)
    grad_bound: float = option(0.0, "Clip the gradient's global norm (0: no clipping).",
                               identity=True, minimum=0.0)
    eval_images: int = option(500, "Held-out images a cell is scored on.", minimum=1)
    eval_batch_size: int = option(500, "Evaluation batch.", minimum=1)
    log_every_steps: int = option(50, "Progress line every k steps.", minimum=1)
    seed: int = option(1, "Random seed (weights, data order, augmentation, cells drawn).",
                       identity=True, minimum=1)


SUPERNET = dict(epochs=250, batch_size=64, lr_max=0.025, lr_min=0.001, grad_bound=5.0)
CANDIDATE = dict(epochs=12)  # hyper-opts/12E.config
SMOKE = dict(dataset="synthetic", synthetic_images=256, channels=4, cells_per_stage=1,
             batch_size=32, eval_batch_size=64, log_every_steps=4)
SEARCH_SMOKE = dict(seed_archs=8, top_k=4, new_archs=4, random_archs=1, max_lambda=10.0,
                    controller_epochs=30, controller_batch_size=8)
# The study's size (bench/nb201_study.py): 2-core CPU, the 5,085-image CIFAR-10 sample.
CPU = dict(channels=8, cells_per_stage=1, epochs=15, eval_every_epochs=5, num_valid=1000,
           eval_images=500, log_every_steps=32, seed_archs=50, top_k=10, new_archs=20,
           random_archs=5, max_lambda=25.0, lambda_step=0.25, controller_epochs=200,
           controller_batch_size=20)


class SupernetTrainee(CnnTrainee):
    """The supernet's epochs: each step trains the cell drawn for it, a function of (seed, step):
    from `pool`, or (`uniform`) over the whole space."""

    def __init__(self, trainer: Trainer, data: data_lib.CifarData, loop: LoopConfig,
                 uniform: bool):
        super().__init__(trainer, data, loop)
        self.evals, self.uniform, self.pool = {}, uniform, []  # `supernet` scores, not the epoch

    def _next_batch(self) -> tuple[tf.Tensor, ...]:
        rng = np.random.default_rng([self.loop.seed, self.trainer.step])
        arch = SPACE.sample(rng) if self.uniform else self.pool[rng.integers(len(self.pool))]
        return (*super()._next_batch(), tf.constant(arch, tf.int32))


def supernet(c: Nb201Config, data: data_lib.CifarData, output_dir: str) -> TraineeSupernet:
    """The supernet, trained in `output_dir/supernet` (resumable by epoch) up to each scoring; a
    cell's score is its accuracy on the fixed held-out images, batch norm on batch statistics."""
    disable_graph_optimizer()  # grappler instantiates each switch branch for minutes
    net = trainer(c, data, None)
    held_out = data_lib.Split(data.valid.images[:c.eval_images], data.valid.labels[:c.eval_images])
    batches = list(data_lib.eval_dataset(held_out, c.eval_batch_size, data.mean, data.std))

    def score(arch) -> float:
        a = tf.constant(arch, tf.int32)
        return sum(float(net.correct_count(x, y, a)) for x, y in batches) / len(held_out)

    return TraineeSupernet(SupernetTrainee(net, data, loop(c), c.sampling == "uniform"),
                           os.path.join(output_dir, "supernet"), net.strategy, c.epochs,
                           c.eval_every_epochs, score)


def trainer(c: Nb201Config, data: data_lib.CifarData, arch,
            strategy: tf.distribute.Strategy | None = None) -> Trainer:
    """The network of `arch` (None: the supernet) and its optimiser."""
    keras.utils.set_random_seed(c.seed)
    optim = OptimConfig(lr_schedule="cosine", lr_max=c.lr_max, lr_min=c.lr_min, nesterov=True,
                        l2_reg=c.weight_decay / 2, grad_bound=c.grad_bound, aux_weight=0.0,
                        epochs=c.epochs, steps_per_epoch=data.steps_per_epoch(c.batch_size),
                        seed=c.seed)
    return Trainer(strategy or tf.distribute.get_strategy(),
                   lambda: Nb201Network(c.channels, c.cells_per_stage, data.num_classes, arch),
                   optim, c.batch_size)


def loop(c: Nb201Config) -> LoopConfig:
    return LoopConfig(batch_size=c.batch_size, eval_batch_size=c.eval_batch_size,
                      eval_every_epochs=c.eval_every_epochs, log_every_steps=c.log_every_steps,
                      seed=c.seed)


def load_data(c: Nb201Config, split: str) -> data_lib.CifarData:
    data = data_lib.load(c.dataset, c.data_dir or None, c.data_source, split, c.num_valid,
                         (c.synthetic_images, c.synthetic_images // 4), seed=c.seed)
    return data if split == "final" else dataclasses.replace(data, test=None)


class Nb201Task(Task):
    name, score_name, ref = "nb201", "held-out accuracy", "nb201.task:TASK"
    final_command = "scripts/train_final.sh nb201 --data_dir=..."
    advice = "lower --lr_max or set --grad_bound"
    configs = {"ws": cli.Flags(Nb201Config, exclude={"arch"}, defaults=SUPERNET),
               "nao": cli.Flags(Nb201Config, exclude={"arch", "sampling", "eval_images"},
                                defaults=CANDIDATE),
               "final": cli.Flags(Nb201Config, exclude={"sampling", "eval_images", "num_valid"})}
    presets = {"ws": {"smoke": {**SMOKE, **SEARCH_SMOKE, "num_valid": 64, "eval_images": 64,
                                "epochs": 2}, "cpu": CPU},
               "nao": {"smoke": {**SMOKE, **SEARCH_SMOKE, "num_valid": 64, "epochs": 1,
                                 "iterations": 1}},
               "final": {"smoke": {**SMOKE, "epochs": 2}}}
    spaces = {"ws": [SPACE], "nao": [SPACE]}
    search_options = {"normalization": "rank"}  # as NAO on the benchmark's table
    scratch = ("checkpoints",)

    def check(self, command, config, strategy=None):
        cli.check_bounds(config)
        if config.lr_max <= 0:
            raise NaoError(f"--lr_max={config.lr_max} must be positive")
        if command == "final" and not config.arch:
            raise NaoError("pass the cell to train: --arch='|nor_conv_3x3~0|+|...|' or "
                           "--arch=<search>/best_arch.json")
        arch = load_arch(SPACE, config.arch)[0] if command == "final" else None
        data = load_data(config, "final" if command == "final" else "search")
        settings = {**cli.config_values(config), "data_fingerprint": fingerprint(config.data_dir)}
        if arch is not None:
            settings["arch"] = SPACE.to_string(arch)
        return settings, data if arch is None else (arch, data)

    def controller(self, command, config):  # as NAO on the benchmark's table
        return dict(emb_size=32, hidden_size=64, mlp_layers=2, mlp_hidden=64, attention="dot",
                    learning_rate=3e-3, trade_off=0.95)

    def supernet(self, config, data, output_dir):
        return supernet(config, data, output_dir)

    def candidates(self, config, settings, data, dirs, output_dir):
        def train_alone(arch, device: str) -> float:
            with build_lock:  # the global seed, then the network
                trainee = CnnTrainee(trainer(config, data, arch), data, loop(config))
            state = train_epochs(trainee, dirs.path(arch), trainee.trainer.strategy,
                                 config.epochs)
            return state["history"][-1]["valid_accuracy"]
        return Candidates(train_alone, 0.0, f"{len(data.train)} training images, "
                          f"{len(data.valid)} held out; {config.epochs} epochs a cell")

    def trainee(self, config, data, strategy):
        arch, data = data
        net = trainer(config, data, arch, strategy)
        mult_adds = network_costs(arch, config.channels, config.cells_per_stage,
                                  data.num_classes, data.image_size)["mult_adds"]
        print(f"cell {SPACE.to_string(arch)}: {count_params(net.model):,} parameters, "
              f"{mult_adds / 1e6:.1f}M multiply-adds at {data.image_size}x{data.image_size} (C="
              f"{config.channels}, N={config.cells_per_stage}, {data.num_classes} classes)",
              flush=True)
        return CnnTrainee(net, data, loop(config))


TASK = Nb201Task()
