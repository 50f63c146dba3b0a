"""The RNN task (`nao_tf.commands.task.Task`): recurrent cells on PTB and WikiText-2. Each
command's settings and logic live in its module: `rnn.train_search` (NAO-WS: the supernet),
`rnn.train_search_nao` (NAO: every cell trained alone), `rnn.train_final` (one cell trained from
scratch)."""

from typing import Any

import tensorflow as tf

from nao_tf.commands import cli
from nao_tf.commands.task import Candidates, Task
from nao_tf.commands.weight_sharing_search import COMMON_FLAG_NAMES
from nao_tf.runtime.distribute import strategy_for_batch
from rnn import train_final, train_search, train_search_nao
from rnn.configs import CONFIGS, SEARCH_CONFIGS
from rnn.model import network_costs
from rnn.search_space import RnnSearchSpace, cell_graphs

SPACE = RnnSearchSpace()


class RnnTask(Task):
    name = "rnn"
    score_name = "validation perplexity"
    higher_is_better = False
    configs = {"ws": cli.Flags(train_search.SearchParams, exclude=COMMON_FLAG_NAMES),
               "nao": train_search_nao.NaoSearchConfig,
               "final": cli.Flags(train_final.TrainParams, exclude=("output_dir", "overwrite"))}
    presets = {"ws": SEARCH_CONFIGS, "nao": {"smoke": train_search_nao.SMOKE}, "final": CONFIGS}
    # The search loop's defaults of the original NAO-WS/rnn/train_search.sh.
    defaults = {"ws": {name: value
                       for name, value in cli.config_values(train_search.SearchParams()).items()
                       if name in COMMON_FLAG_NAMES}}
    spaces = {"ws": [SPACE], "nao": [SPACE]}
    ref = "rnn.task:TASK"
    final_command = "scripts/train_final.sh rnn --config=ptb"
    graphs = staticmethod(cell_graphs)
    settings_file = "flags.json"
    search_options = {"normalization": "minmax"}
    scratch = ("checkpoints", "best")
    advice = "lower --lr or --clip, then rerun the same command"

    def check(self, command, config, strategy=None):
        if command == "ws":
            return train_search.check(config)
        if command == "nao":
            return train_search_nao.check(config)
        return train_final.check(config)

    def controller(self, command: str, config: Any) -> dict[str, Any]:
        if command == "ws":
            return train_search.controller(config)
        # The TF original's non-weight-sharing EPD: the LSTM reads all 22 tokens.
        return dict(encoder_length=SPACE.source_length, emb_size=96, hidden_size=96,
                    mlp_layers=3, mlp_hidden=200, encoder_dropout=0.1, mlp_dropout=0.1,
                    attention="bahdanau", trade_off=0.8, weight_decay=1e-4, learning_rate=1e-3,
                    max_gradient_norm=5.0)

    def cost_model(self, command, config, space):
        """The PTB final network's (`--config=ptb`: 10,000 words, 850 units); every cell of the
        space costs the same (`rnn.model.network_costs`), so a budget admits all or none."""
        return (lambda arch: network_costs(arch, 10_000, 850),
                "the PTB final network, 10,000 words, 850 units")

    def supernet(self, config, data, output_dir):
        return train_search.supernet(config, data)

    def candidates(self, config, settings, data, dirs, output_dir) -> Candidates:
        return train_search_nao.candidates(config, data, dirs, output_dir)

    def read_imports(self, config, space, archs_path, scores_path):
        return train_search_nao.read_imports(config, space, archs_path, scores_path)

    def strategy(self, config) -> tf.distribute.Strategy:
        return strategy_for_batch(config.batch_size, multi_worker=True)

    def trainee(self, config, data, strategy):
        return train_final.build(config, data, strategy)

    def epochs(self, config) -> dict[str, int]:
        return {"epochs": config.epochs, "max_rollbacks": config.max_rollbacks}

    def results(self, config, trainee, state, chief, output_dir):
        return train_final.report(trainee.results(state))


TASK = RnnTask()
