"""A task from the core's pieces only: the core's synthetic cells, one network regressing a fixed
function of 8 inputs (the architecture enters `call` as a tensor, so one model is the stand-alone
network and the supernet), presets. Score: validation MSE."""

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from nao_tf.algorithm.search_space import load_arch
from nao_tf.commands import cli
from nao_tf.commands.task import Candidates, Task
from nao_tf.runtime.train_loop import Trainee, TraineeSupernet, train_epochs
from nao_tf.spaces.synthetic import SyntheticSpace

SPACE = SyntheticSpace(num_nodes=2, choices=3)


class ToyNet(keras.Model):
    """Stems give s0, s1; a node sums two op(state) (Dense+ReLU, Dense+tanh, identity)."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.stems = [keras.layers.Dense(width) for _ in range(2)]
        self.ops = [[keras.layers.Dense(width, activation=a) for a in ("relu", "tanh")]
                    for _ in range(2 * SPACE.num_nodes)]
        self.head = keras.layers.Dense(1)

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


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    arch: str = cli.option("", "Architecture (the space's text form).", identity=True)
    epochs: int = cli.option(6, "Training epochs (supernet: in all).", identity=True)
    lr: float = cli.option(0.01, "Adam learning rate.", identity=True)
    seed: int = cli.option(1, "Random seed.", identity=True)


class ToyTrainee(Trainee):
    """A `ToyNet` trained with Adam, epoch by epoch, each step on an architecture drawn from
    `pool` (one: trained alone; the search's pool: the supernet), given to `step` as a tensor."""

    def __init__(self, pool: list, c: ToyConfig):
        keras.utils.set_random_seed(c.seed)
        self.pool, self.seed, self.model = pool, c.seed, ToyNet()
        self.optimizer, rng = keras.optimizers.Adam(c.lr), np.random.default_rng(0)
        self.x = rng.normal(size=(320, 8)).astype(np.float32)
        self.y = np.tanh(self.x @ rng.normal(size=8)).astype(np.float32)
        self.mse(pool[0])  # builds the model
        self.optimizer.build(self.model.trainable_variables)
        self.trackables = {"model": self.model, "optimizer": self.optimizer}
        self.strategy = tf.distribute.get_strategy()

    @tf.function
    def step(self, x, y, arch):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((self.model(x, arch) - y) ** 2)
        variables = self.model.trainable_variables
        self.optimizer.apply(tape.gradient(loss, variables), variables)

    def train_epoch(self, epoch: int, attempt: int, state: dict, writer) -> dict:
        rng = np.random.default_rng([self.seed, epoch])
        for i in range(0, 256, 32):
            arch = self.pool[rng.integers(len(self.pool))]
            self.step(self.x[i:i + 32], self.y[i:i + 32], tf.constant(SPACE.to_tokens(arch)))
        return {"valid_mse": self.mse(self.pool[0])}

    def mse(self, arch) -> float:
        predicted = self.model(self.x[256:], tf.constant(SPACE.to_tokens(arch)))
        return float(np.mean((predicted - self.y[256:]) ** 2))


SEARCH = cli.Flags(ToyConfig, exclude={"arch"})
TINY = {"tiny": dict(seed_archs=8, top_k=4, new_archs=4, random_archs=1, max_lambda=10.0,
                     controller_epochs=20, controller_batch_size=8)}


class ToyTask(Task):
    name, score_name, higher_is_better, ref = "toy", "validation MSE", False, "tests.toy_task:TASK"
    advice = "lower --lr"
    configs = {"ws": SEARCH, "nao": SEARCH,  # a final training's epochs may grow on a rerun
               "final": cli.Flags(ToyConfig, identity={"arch", "lr", "seed"})}
    presets, spaces = {"ws": TINY, "nao": TINY}, {"ws": [SPACE], "nao": [SPACE]}

    def check(self, command, config, strategy=None):
        return cli.config_values(config), load_arch(SPACE, config.arch)[0] if config.arch else None

    def controller(self, command, config):
        return dict(emb_size=16, hidden_size=32, mlp_layers=1, mlp_hidden=32, attention="dot")

    def cost_model(self, command, config, space):
        """Parameters of a cell's network: the stems, the head and the dense layers it uses."""
        def costs(arch):
            ops = SPACE.to_tokens(arch)[1::2]
            dense = sum(op - 1 - SPACE.choices < 2 for op in ops)
            return {"params": 2 * (8 * 16 + 16) + 17 + dense * (16 * 16 + 16)}
        return costs, "the toy network"

    def forward_pass(self, command, config, arch, batch):
        model, x = ToyNet(), tf.zeros([batch, 8])
        tokens = tf.constant(SPACE.to_tokens(arch))
        infer = tf.function(lambda: model(x, tokens))
        return infer

    def supernet(self, config, data, output_dir):  # resumes after the last finished epoch
        net = ToyTrainee([SPACE.sample(np.random.default_rng(0))], config)
        return TraineeSupernet(net, f"{output_dir}/supernet", net.strategy, config.epochs, 3,
                               net.mse, higher_is_better=False)

    def candidates(self, config, settings, data, dirs, output_dir):
        def train_alone(arch, device: str) -> float:
            trainee = ToyTrainee([arch], config)
            state = train_epochs(trainee, dirs.path(arch), trainee.strategy, config.epochs)
            return state["history"][-1]["valid_mse"]
        return Candidates(train_alone, None, "toy")

    def trainee(self, config, arch, strategy):
        return ToyTrainee([arch], config)


TASK = ToyTask()
