"""What a cell pair costs in a final network: trainable parameters and multiply-adds, counted from
the structure of `cnn.model.NASNetwork` without building it (about 0.2 ms a cell, so a search can
count every candidate).

The walk below mirrors the network's construction layer by layer (stem, 3N + 2 cells with their
input calibrations, the ops of every branch, the reductions of unused cell inputs, the
classifier); `tests/cnn/costs_test.py` checks it against the built networks' own counts
(`cnn.model.count_params`, `count_mult_adds`) for random cells of every op and all three networks.
Counts are those of inference: the auxiliary head is not included (the original counts the
parameters without it). Multiply-adds: a convolution's output pixels times its kernel's size, a
dense layer's weight count, for one image (batch norm, pooling, additions and ReLUs are free, as
NAS papers count them).
"""

from __future__ import annotations

import dataclasses

from cnn.search_space import NUM_CELL_INPUTS, OPS, Cell, CellArch
from nao_tf.commands import cli


def _ceil_half(size: int, strides: int) -> int:
    return -(-size // strides)


@dataclasses.dataclass(frozen=True)
class CostNetwork:
    """The network a cell is counted in: `cnn.model.NASNetwork`'s arguments that change its
    costs (N = `num_cells_per_stage`, F = `filters`)."""

    network: str = "nao_ws"
    num_cells_per_stage: int = 5
    filters: int = 36
    num_classes: int = 10
    image_size: int = 32
    stem_multiplier: int = 3

    def __str__(self) -> str:
        return (f"the {self.network} network, N={self.num_cells_per_stage} F={self.filters}, "
                f"{self.image_size}x{self.image_size}, {self.num_classes} classes")

    def costs(self, arch: CellArch) -> dict[str, int]:
        """{"params": trainable parameters, "mult_adds": multiply-adds of one image}."""
        counter = _Counter(self.network)
        counter.network_of(arch, self)
        return {"params": counter.params, "mult_adds": counter.mult_adds}


def op_costs(op_id: int, width: int, size: int, strides: int,
             network: str = "nao_ws") -> dict[str, int]:
    """Parameters and multiply-adds of branch op `op_id` (`cnn.ops.make_op`) on a `width`-channel
    input of `size` x `size` pixels."""
    counter = _Counter(network)
    counter.op(op_id, width, width, size, strides)
    return {"params": counter.params, "mult_adds": counter.mult_adds}


# The final networks' defaults, per network (`cnn.configs`): NAO-WS (N = 5, F = 36), the NAO
# release's NAONet at the PyTorch port's CIFAR width (N = 6, F = 36), and the ImageNet mobile
# network (N = 4, F = 42, 224 x 224, 1,000 classes).
FINAL_NETWORKS = {
    "nao_ws": CostNetwork("nao_ws", 5, 36),
    "nao": CostNetwork("nao", 6, 36),
    "imagenet": CostNetwork("imagenet", 4, 42, num_classes=1000, image_size=224),
}




@dataclasses.dataclass(frozen=True)
class CostNetworkConfig:
    """Flags of the searches: the final network a cell's costs are counted in (what
    --max_params and --max_mult_adds limit)."""

    network: str = cli.option("nao_ws", "The network a search's budget counts a cell in: the "
                              "CIFAR networks nao_ws or nao, or imagenet (224x224, 1,000 "
                              "classes: the mobile setting's).", list(FINAL_NETWORKS))
    final_num_cells: int = cli.option(0, "N of the network the budget counts a cell in (0: its "
                                      "final training's: 5 for nao_ws, 6 for nao, 4 for "
                                      "imagenet).", minimum=0)
    final_filters: int = cli.option(0, "F of the network the budget counts a cell in (0: 36, "
                                    "or 42 for imagenet).", minimum=0)
    final_image_size: int = cli.option(0, "Image size of the network the budget counts a cell "
                                       "in (0: 32, or 224 for imagenet).", minimum=0)

    def network_for(self, num_classes: int, network: str = "") -> CostNetwork:
        """The `CostNetwork` of these flags (`network` replaces --network where a command has
        its own), CIFAR networks with `num_classes` classes."""
        base = FINAL_NETWORKS[network or self.network]
        return dataclasses.replace(
            base, num_cells_per_stage=self.final_num_cells or base.num_cells_per_stage,
            filters=self.final_filters or base.filters,
            image_size=self.final_image_size or base.image_size,
            num_classes=base.num_classes if base.network == "imagenet" else num_classes)


@dataclasses.dataclass
class _Counter:
    """Running totals while walking one network."""

    network: str
    params: int = 0
    mult_adds: int = 0

    def conv(self, cin: int, cout: int, kernel: tuple[int, int], out_size: tuple[int, int],
             bn: bool = True) -> None:
        weights = kernel[0] * kernel[1] * cin * cout
        self.params += weights + (2 * cout if bn else 0)
        self.mult_adds += weights * out_size[0] * out_size[1]

    def square_conv(self, cin: int, cout: int, k: int, out: int) -> None:
        self.conv(cin, cout, (k, k), (out, out))

    def separable(self, cin: int, cout: int, k: int, out: int) -> None:
        """One Keras SeparableConv2D (depth multiplier 1) + BN."""
        self.params += k * k * cin + cin * cout + 2 * cout
        self.mult_adds += (k * k * cin + cin * cout) * out * out

    def factorized_reduce(self, cin: int, cout: int, out: int) -> None:
        """Two 1x1 convs to cout / 2 on the even and the shifted pixels, BN."""
        self.conv(cin, cout // 2, (1, 1), (out, out), bn=False)
        self.conv(cin, cout // 2, (1, 1), (out, out), bn=False)
        self.params += 2 * cout

    def op(self, op_id: int, cin: int, filters: int, size: int, strides: int) -> None:
        """Branch op `op_id` (`cnn.ops.make_op`) on a `cin`-channel input of `size` pixels."""
        spec = OPS[op_id]
        out = _ceil_half(size, strides)
        other_width = cin != filters
        if spec.kind in ("sep_conv", "conv"):
            at_stride = 1 if spec.dilation > 1 and strides > 1 else strides
            conv_out = _ceil_half(size, at_stride)
            if spec.kind == "sep_conv":
                self.separable(cin, filters, spec.size, conv_out)
                self.separable(filters, filters, spec.size, conv_out)
            else:
                self.square_conv(cin, filters, spec.size, conv_out)
            if at_stride != strides:  # `DilatedAtStride`: then ReLU-1x1(stride 2)-BN
                self.square_conv(filters, filters, 1, out)
        elif spec.kind == "factorized_conv":
            k = spec.size
            if self.network == "imagenet":  # the stride split over the two convs
                self.conv(cin, filters, (1, k), (size, out))
            else:
                self.conv(cin, filters, (1, k), (out, out))
            self.conv(filters, filters, (k, 1), (out, out))
        elif spec.kind in ("avg_pool", "max_pool", "min_pool"):
            if other_width:  # `Calibrated`: ReLU-1x1-BN after the pooling
                self.square_conv(cin, filters, 1, out)
        elif self.network == "nao" and (strides > 1 or other_width):
            self.square_conv(cin, filters, 1, out)  # the TF release's ReLU-1x1-BN identity
        elif strides > 1:
            self.factorized_reduce(cin, filters, out)

    def cell(self, cell: Cell, width: int, reduction: bool, channels: tuple[int, int],
             sizes: tuple[int, int], raw_input0: bool) -> int:
        """One `cnn.model.NASCell`; returns its output channels."""
        c0, c1 = channels
        size = sizes[1]
        nao = self.network == "nao"
        if sizes[0] > sizes[1]:
            self.factorized_reduce(c0, width, size)
        elif c0 != width and not raw_input0:
            self.square_conv(c0, width, 1, size)
        if c1 != width and not nao:
            self.square_conv(c1, width, 1, size)
            c1 = width
        if self.network != "imagenet":
            self.square_conv(c1, width, 1, size)
        width0 = c0 if raw_input0 else width
        out = _ceil_half(size, 2) if reduction else size
        for node in cell.nodes:
            for inp, op in ((node.in1, node.op1), (node.in2, node.op2)):
                from_input = inp < NUM_CELL_INPUTS
                self.op(op, width0 if inp == 0 else width, width,
                        size if from_input else out, 2 if reduction and from_input else 1)
        loose_ends = cell.loose_ends()
        if width0 != width and 0 in loose_ends:
            self.conv(width0, width, (1, 1), (size, size))  # the raw stem's 1x1-BN
        if reduction:
            for i in loose_ends:
                if i < NUM_CELL_INPUTS:
                    self.factorized_reduce(width, width, out)
        return len(loose_ends) * width

    def network_of(self, arch: CellArch, net: CostNetwork) -> None:
        """The whole `cnn.model.NASNetwork` (its `_build_layers`), aux head aside."""
        n, f, image = net.num_cells_per_stage, net.filters, net.image_size
        if self.network == "imagenet":
            half, quarter, eighth = (_ceil_half(image, s) for s in (2, 4, 8))
            self.square_conv(3, f // 2, 3, half)
            self.square_conv(f // 2, f, 3, quarter)
            self.square_conv(f, f, 3, eighth)
            channels, sizes = (f, f), (quarter, eighth)
        else:
            stem = net.stem_multiplier * f
            self.square_conv(3, stem, 3, image)
            channels, sizes = (stem, stem), (image, image)
        width = f
        for idx in range(3 * n + 2):
            reduction = idx in (n, 2 * n + 1)
            width = 2 * width if reduction else width
            out_channels = self.cell(arch.reduction if reduction else arch.normal, width,
                                     reduction, channels, sizes,
                                     raw_input0=self.network == "nao" and idx == 0)
            channels = (channels[1], out_channels)
            sizes = (sizes[1], _ceil_half(sizes[1], 2) if reduction else sizes[1])
        weights = channels[1] * net.num_classes
        self.params += weights + (net.num_classes if self.network != "nao_ws" else 0)
        self.mult_adds += weights
