"""A third task, built from the core's pieces only: a space, one network, presets. The space is the core's synthetic cell space (2 nodes, 3 inputs, 3 ops). The network regresses a
fixed random function of 8 inputs: two stems give states s0, s1; each node sums two branches
op(state), ops being Dense+ReLU, Dense+tanh and identity; the last node feeds a linear head. The
architecture enters `call` as an int32 tensor, so one model class is the stand-alone network and
the supernet (a pool architecture per step). The score is the validation MSE.
"""

import dataclasses

import keras
import numpy as np
import tensorflow as tf
from absl import flags

from nao_tf.algorithm.evaluators import Record, WeightSharingEvaluator
from nao_tf.algorithm.search_space import load_arch
from nao_tf.commands import cli, final_training, standalone_search, weight_sharing_search
from nao_tf.runtime import train_loop
from nao_tf.spaces.synthetic import SyntheticSpace

SPACE = SyntheticSpace(num_nodes=2, choices=3)
WIDTH = 16


class ToyNet(keras.Model):
    def __init__(self):
        super().__init__()
        self.stems = [keras.layers.Dense(WIDTH) for _ in range(2)]
        self.ops = [[keras.layers.Dense(WIDTH, activation=a) for a in ("relu", "tanh")]
                    for _ in range(2 * SPACE.num_nodes)]
        self.head = keras.layers.Dense(1)

    def build(self, input_shape):
        for layer in self.stems:
            layer.build(input_shape)
        for layer in [op for ops in self.ops for op in ops] + [self.head]:
            layer.build((None, WIDTH))

    def call(self, x, arch):
        states = [stem(x) for stem in self.stems]
        for node in range(SPACE.num_nodes):
            total = 0.0
            for branch in range(2):
                pos = 4 * node + 2 * branch
                h = tf.tensordot(tf.one_hot(arch[pos] - 1, len(states)), tf.stack(states), 1)
                outputs = tf.stack([op(h) for op in self.ops[2 * node + branch]] + [h])
                total += tf.tensordot(tf.one_hot(arch[pos + 1] - 1 - SPACE.choices, 3), outputs, 1)
            states.append(total)
        return self.head(states[-1])[:, 0]


def make_data(seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(320, 8)).astype(np.float32)
    y = np.tanh(x @ rng.normal(size=8)) + 0.5 * np.maximum(x[:, 0], 0)
    return (x[:256], y[:256].astype(np.float32)), (x[256:], y[256:].astype(np.float32))


class Fitter:
    """Trains a `ToyNet` with Adam; `step` takes the architecture as a tensor (traced once)."""

    def __init__(self, lr: float, seed: int):
        keras.utils.set_random_seed(seed)
        self.model, self.optimizer = ToyNet(), keras.optimizers.Adam(lr)
        (self.x, self.y), (self.vx, self.vy) = make_data()
        self.model(self.x[:1], tf.constant(SPACE.to_tokens(SPACE.sample(np.random.default_rng(0)))))
        self.optimizer.build(self.model.trainable_variables)

    @tf.function
    def step(self, x, y, arch):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((self.model(x, arch) - y) ** 2)
        grads = tape.gradient(loss, self.model.trainable_variables)
        self.optimizer.apply(grads, self.model.trainable_variables)

    def epoch(self, pick_arch) -> None:
        for i in range(0, len(self.x), 32):
            self.step(self.x[i:i + 32], self.y[i:i + 32], tf.constant(SPACE.to_tokens(pick_arch())))

    def mse(self, arch) -> float:
        return float(np.mean((self.model(self.vx, tf.constant(SPACE.to_tokens(arch))) - self.vy) ** 2))


class ToySupernet(WeightSharingEvaluator):
    higher_is_better = False

    def __init__(self, fv: flags.FlagValues):
        self.epochs, self.eval_every_epochs, self.seed = fv.epochs, fv.eval_every_epochs, fv.seed
        self.fitter = Fitter(fv.lr, fv.seed)
        self.done = tf.Variable(0)
        ckpt = tf.train.Checkpoint(model=self.fitter.model, done=self.done)
        self.manager = tf.train.CheckpointManager(ckpt, f"{fv.output_dir}/supernet", 1)
        ckpt.restore(self.manager.latest_checkpoint)

    def prepare(self, pool, iteration: int) -> None:
        rng = np.random.default_rng([self.seed, iteration])
        while int(self.done) < self.evaluation_epoch(iteration):
            self.fitter.epoch(lambda: pool[rng.integers(len(pool))])
            self.done.assign_add(1)
            self.manager.save()

    def evaluate(self, archs, iteration: int, record: Record) -> None:
        for arch in archs:
            record(arch, self.fitter.mse(arch))


class ToyTrainee(train_loop.Trainee):
    """One architecture trained alone, epoch by epoch."""

    def __init__(self, arch, fv: flags.FlagValues):
        self.arch, self.fitter = arch, Fitter(fv.lr, fv.seed)
        self.trackables = {"model": self.fitter.model, "optimizer": self.fitter.optimizer}

    def train_epoch(self, epoch: int, attempt: int, state: dict, writer) -> dict:
        self.fitter.epoch(lambda: self.arch)
        return {"valid_mse": self.fitter.mse(self.arch)}


def train_alone(fv: flags.FlagValues, dirs) -> standalone_search.Setup:
    return standalone_search.Setup(lambda arch, device: train_loop.train_epochs(
        ToyTrainee(arch, fv), dirs.path(arch), tf.distribute.get_strategy(), fv.epochs
    )["history"][-1]["valid_mse"], None, "toy")


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    epochs: int = cli.option(6, "Training epochs (supernet: in all).", identity=True)
    eval_every_epochs: int = cli.option(3, "Supernet epochs between scorings of the pool.")
    lr: float = cli.option(0.01, "Adam learning rate.", identity=True)
    seed: int = cli.option(1, "Random seed.", identity=True)


@dataclasses.dataclass(frozen=True)
class ArchConfig:
    arch: str = cli.option("", "Architecture (the space's text form).", identity=True)


IDENTITY = cli.identity_keys(ToyConfig)
FINAL_FLAGS = [ArchConfig, cli.Flags(ToyConfig, identity={"lr", "seed"})]  # epochs may grow
PRESETS = {"tiny": dict(seed_archs=8, top_k=4, new_archs=4, random_archs=1, max_lambda=10.0,
                        controller_epochs=20, controller_batch_size=8)}
CONTROLLER = dict(emb_size=16, hidden_size=32, mlp_layers=1, mlp_hidden=32, attention="dot")


def settings(fv: flags.FlagValues) -> tuple[dict, None]:
    return {f.name: fv[f.name].value for f in dataclasses.fields(ToyConfig)}, None


WS_TASK = weight_sharing_search.WeightSharingTask(
    name="toy", space=SPACE, flags=[ToyConfig], presets=PRESETS, identity=IDENTITY,
    check=settings, evaluator=lambda fv, _: ToySupernet(fv), controller=lambda _: CONTROLLER,
    score_name="validation MSE", defaults={"symmetry": True, "max_lambda": 10.0})
STANDALONE_TASK = standalone_search.StandaloneTask(
    name="toy", space=SPACE, flags=[ToyConfig], presets=PRESETS, identity=IDENTITY,
    controller=CONTROLLER, higher_is_better=False, score_name="validation MSE", check=settings,
    setup=lambda fv, s, data, dirs: train_alone(fv, dirs), read_imports=lambda fv: [],
    ref="tests.toy_task:STANDALONE_TASK")
FINAL_TASK = final_training.FinalTask(
    name="toy", flags=FINAL_FLAGS, presets={}, identity=cli.identity_keys(*FINAL_FLAGS),
    check=lambda fv, _: ({"arch": fv.arch, **settings(fv)[0]}, load_arch(SPACE, fv.arch)[0]),
    build=lambda fv, arch, _: ToyTrainee(arch, fv), advice=lambda fv: "lower --lr",
    finish=lambda fv, trainee, state, chief: {"valid_mse": state["history"][-1]["valid_mse"]})
