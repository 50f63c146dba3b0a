"""The CNN task (`nao_tf.commands.task.Task`): cells of the NASNet-like spaces on CIFAR, and the
final training on CIFAR or ImageNet. Each command's settings and logic live in its module:
`cnn.train_search` (NAO-WS: the supernet), `cnn.train_search_nao` (NAO: every cell trained
alone), `cnn.train_final` (one cell trained from scratch)."""

from typing import Any, Mapping

import tensorflow as tf

from cnn import data as data_lib, train_final, train_search, train_search_nao
from cnn.configs import CONFIGS, DATASET_OVERRIDES
from cnn.costs import CostNetwork
from cnn.search_space import NAO_WS_SPACE, NAONET_19_SPACE, NAONET_SPACE, cell_graphs
from nao_tf.commands import cli
from nao_tf.commands.task import Candidates, Task

for _override in DATASET_OVERRIDES.values():
    cli.check_preset(_override, train_final.FinalConfig)


class CifarTask(Task):
    name = "cnn"
    score_name = "validation accuracy"
    configs = {"ws": train_search.SearchTaskConfig, "nao": train_search_nao.NaoSearchConfig,
               "final": train_final.FinalConfig}
    presets = {"ws": {"smoke": train_search.SMOKE,
                      "nao_pytorch_v1": train_search.NAO_PYTORCH_V1},
               "nao": {"smoke": train_search_nao.SMOKE},
               "final": CONFIGS}
    spaces = {"ws": [NAO_WS_SPACE], "nao": [NAONET_SPACE, NAONET_19_SPACE]}
    ref = "cnn.task:TASK"
    final_command = "scripts/train_final.sh cnn --config=nao_ws"
    graphs = staticmethod(cell_graphs)
    scratch = ("checkpoints",)
    advice = "rerun the same command with a lower --lr_max (a resume may change it)"
    owned = ("export",)

    def final_command_after(self, preset: str) -> str:
        # NAONet-B, found by the PyTorch port's search, was trained with the port's recipe.
        if preset == "nao_pytorch_v1":
            return "scripts/train_final.sh cnn --config=naonet_b_36"
        return self.final_command

    def preset(self, command: str, name: str, config: Any) -> Mapping[str, Any]:
        if command != "final":
            return self.presets[command][name]
        return {**CONFIGS[name], **DATASET_OVERRIDES.get((name, config.data.dataset), {})}

    def check(self, command, config, strategy=None):
        if command == "ws":
            return train_search.check(config)
        if command == "nao":
            return train_search_nao.check(config)
        return train_final.check(config, strategy)

    def controller(self, command: str, config: Any) -> dict[str, Any]:
        if command == "ws":
            return train_search.controller(config)
        # The TF original's non-weight-sharing EPD.
        return dict(emb_size=32, hidden_size=96, mlp_layers=0, mlp_hidden=100,
                    encoder_dropout=0.1, mlp_dropout=0.0, attention="bahdanau", trade_off=0.8,
                    weight_decay=1e-4, learning_rate=1e-3, max_gradient_norm=5.0)

    def cost_model(self, command, config, space):
        """Costs in the final network of `--network` (NAO-WS; NAO without weight sharing: the
        network its candidates train in) at `--final_num_cells`, `--final_filters`."""
        network = _cost_network(command, config)
        return network.costs, str(network)

    def forward_pass(self, command, config, arch, batch):
        from cnn.model import NASNetwork

        net = _cost_network(command, config)
        model = NASNetwork(arch, net.num_cells_per_stage, net.filters, net.num_classes,
                           use_aux_head=False, stem_multiplier=net.stem_multiplier,
                           image_size=net.image_size, network=net.network)
        model.build_now()
        images = tf.zeros([batch, net.image_size, net.image_size, 3])
        infer = tf.function(lambda x: model(x, training=False))
        return lambda: infer(images)

    def supernet(self, config, data, output_dir):
        return train_search.supernet(config, data, output_dir)

    def candidates(self, config, settings, data, dirs, output_dir) -> Candidates:
        return train_search_nao.candidates(config, data, dirs)

    def read_imports(self, config, space, archs_path, scores_path):
        return train_search_nao.read_imports(config, space, archs_path, scores_path)

    def trainee(self, config, data, strategy: tf.distribute.Strategy):
        return train_final.build(config, data, strategy)

    def epochs(self, config) -> dict[str, int]:
        return {"epochs": config.optim.epochs, "keep_checkpoints": config.keep_checkpoints}

    def results(self, config, trainee, state, chief, output_dir):
        return train_final.finish(config, trainee, state, chief, output_dir)


def _cost_network(command: str, config: Any) -> CostNetwork:
    if command == "ws":
        return config.costs.network_for(data_lib.num_classes(config.data.dataset))
    return config.costs.network_for(data_lib.num_classes(config.task.dataset),
                                    config.schedule.network.network)


TASK = CifarTask()
