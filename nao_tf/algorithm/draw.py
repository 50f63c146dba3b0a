"""Pictures of a search: its cells, a DAG per cell, as PNG (matplotlib) and as Graphviz DOT text;
and, for a search under a budget, every evaluated cell's score against each cost with the Pareto
front (`render_pareto_png`).

Tasks turn an architecture into `CellGraph`s (the CNN search space: a normal and a reduction cell;
the RNN space: one recurrent cell); this module knows nothing else about them. The look follows
the DARTS/NAO plots researchers know: inputs green, intermediate nodes blue, the output yellow,
one arrow per (input, op) branch labelled with the op.
"""

import dataclasses
import io
from collections import Counter
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch

INPUT_COLOR, NODE_COLOR, OUTPUT_COLOR = "#b4eeb4", "#add8e6", "#eee8aa"


@dataclasses.dataclass(frozen=True)
class CellGraph:
    """A cell as a DAG.

    `inputs` feed the `edges` (source, target, op label) into intermediate nodes (the edge
    targets); the `output` node joins `output_from` (e.g. the unused nodes, concatenated).
    """

    title: str
    inputs: Sequence[str]
    edges: Sequence[tuple[str, str, str]]
    output: str
    output_from: Sequence[str]
    output_label: str = ""

    @property
    def nodes(self) -> list[str]:
        """The intermediate nodes, in order of first appearance as an edge target."""
        seen: dict[str, None] = {}
        for _, target, _ in self.edges:
            if target not in self.inputs:
                seen.setdefault(target, None)
        return list(seen)

    def validate(self) -> None:
        known = set(self.inputs) | set(self.nodes)
        unknown = {s for s, _, _ in self.edges if s not in known} | (set(self.output_from) - known)
        if unknown:
            raise ValueError(f"cell graph {self.title!r} refers to unknown nodes {sorted(unknown)}")


def _depths(graph: CellGraph) -> dict[str, int]:
    """Longest-path depth of each node: inputs 0, the output one past the deepest node."""
    depth = {name: 0 for name in graph.inputs}
    for node in graph.nodes:  # edges only point to earlier nodes, so one pass in order suffices
        sources = [s for s, t, _ in graph.edges if t == node]
        depth[node] = 1 + max((depth.get(s, 0) for s in sources), default=0)
    depth[graph.output] = 1 + max(depth.values())
    return depth


def _positions(graph: CellGraph) -> dict[str, tuple[float, float]]:
    """Nodes in columns by depth; within a column, ordered by the mean height of their sources
    (the barycentre heuristic), which keeps most edges from crossing."""
    depth = _depths(graph)
    layers: dict[int, list[str]] = {}
    for name, d in depth.items():
        layers.setdefault(d, []).append(name)
    sources = {name: [s for s, t, _ in graph.edges if t == name] for name in depth}
    sources[graph.output] = list(graph.output_from)
    positions: dict[str, tuple[float, float]] = {}
    for d in sorted(layers):
        names = layers[d]
        if d > 0:
            def height(name: str) -> float:
                placed = [positions[s][1] for s in sources[name] if s in positions]
                return sum(placed) / len(placed) if placed else 0.0
            names = sorted(names, key=height, reverse=True)
        for i, name in enumerate(names):
            positions[name] = (float(d), (len(names) - 1) / 2.0 - i)
    return positions


def _draw_one(ax: plt.Axes, graph: CellGraph) -> None:
    graph.validate()
    pos = _positions(graph)
    colors = {n: INPUT_COLOR for n in graph.inputs} | {n: NODE_COLOR for n in graph.nodes}
    colors[graph.output] = OUTPUT_COLOR
    arrows = [(s, t, label, "black") for s, t, label in graph.edges]
    arrows += [(s, graph.output, "", "gray") for s in graph.output_from]
    seen_pairs: dict[tuple[str, str], int] = {}
    for source, target, label, color in arrows:
        k = seen_pairs.get((source, target), 0)
        seen_pairs[(source, target)] = k + 1
        rad = 0.25 * (k + 1) * (-1) ** k if k else 0.12
        ax.add_patch(FancyArrowPatch(pos[source], pos[target], arrowstyle="-|>", mutation_scale=12,
                                     connectionstyle=f"arc3,rad={rad}", color=color, lw=1.0,
                                     shrinkA=14, shrinkB=14))
        if label:
            (x0, y0), (x1, y1) = pos[source], pos[target]
            # arc3 is the quadratic Bezier with control point mid + rad * (dy, -dx); labels sit
            # past the middle, so the labels of edges leaving one node do not pile up.
            cx, cy = (x0 + x1) / 2 + rad * (y1 - y0), (y0 + y1) / 2 - rad * (x1 - x0)
            t = 0.6
            lx = (1 - t) ** 2 * x0 + 2 * t * (1 - t) * cx + t ** 2 * x1
            ly = (1 - t) ** 2 * y0 + 2 * t * (1 - t) * cy + t ** 2 * y1
            ax.text(lx, ly, label, fontsize=7,
                    ha="center", va="center", bbox=dict(boxstyle="round,pad=0.15", fc="white",
                                                        ec="none", alpha=0.85))
    for name, (x, y) in pos.items():
        text = name if name != graph.output or not graph.output_label else f"{name}\n({graph.output_label})"
        ax.text(x, y, text, ha="center", va="center", fontsize=8,
                bbox=dict(boxstyle="round,pad=0.4", fc=colors[name], ec="black", lw=0.8))
    xs, ys = [p[0] for p in pos.values()], [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - 0.6, max(xs) + 0.6)
    ax.set_ylim(min(ys) - 0.9, max(ys) + 0.9)
    ax.set_title(graph.title, fontsize=10)
    ax.axis("off")


def render_png(graphs: Sequence[CellGraph], dpi: int = 110) -> bytes:
    """The graphs one above the other (near 4:3 for a CNN's two cells, readable at TensorBoard's
    image-card size), as PNG bytes."""
    width = max(4.0, *(2.0 * (max(_depths(g).values()) + 1) for g in graphs))
    heights = [0.8 * (max(Counter(_depths(g).values()).values()) + 1) for g in graphs]
    fig, axes = plt.subplots(len(graphs), 1, figsize=(width, max(sum(heights), 0.75 * width)),
                             gridspec_kw=dict(height_ratios=heights), squeeze=False)
    try:
        for ax, graph in zip(axes[:, 0], graphs):
            _draw_one(ax, graph)
        return _png(fig, dpi)
    finally:
        plt.close(fig)


def _png(fig: plt.Figure, dpi: int) -> bytes:
    """`fig`, laid out tightly, as PNG bytes."""
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _dot_name(text: str) -> str:
    return '"' + text.replace('"', '\\"') + '"'


def to_dot(graphs: Sequence[CellGraph]) -> str:
    """Graphviz DOT text (one cluster per graph), for `dot -Tpdf best_arch.dot -o best_arch.pdf`."""
    lines = ["digraph cells {", "  rankdir=LR;", '  node [style="rounded,filled", shape=rect, '
             'fontname=helvetica];', "  edge [fontname=helvetica, fontsize=10];"]
    for i, graph in enumerate(graphs):
        graph.validate()
        qualify = {n: _dot_name(f"{i}:{n}") for n in [*graph.inputs, *graph.nodes, graph.output]}
        lines.append(f"  subgraph cluster_{i} {{")
        lines.append(f"    label={_dot_name(graph.title)};")
        for name in graph.inputs:
            lines.append(f'    {qualify[name]} [label={_dot_name(name)}, fillcolor="{INPUT_COLOR}"];')
        for name in graph.nodes:
            lines.append(f'    {qualify[name]} [label={_dot_name(name)}, fillcolor="{NODE_COLOR}"];')
        label = graph.output + (f" ({graph.output_label})" if graph.output_label else "")
        lines.append(f'    {qualify[graph.output]} [label={_dot_name(label)}, fillcolor="{OUTPUT_COLOR}"];')
        for source, target, op in graph.edges:
            lines.append(f"    {qualify[source]} -> {qualify[target]} [label={_dot_name(op)}];")
        for source in graph.output_from:
            lines.append(f"    {qualify[source]} -> {qualify[graph.output]} [color=gray];")
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_pareto_png(records: Sequence[Mapping], fronts: Mapping[str, Sequence[Mapping]],
                      limits: Mapping[str, int], score_name: str = "score",
                      dpi: int = 110) -> bytes:
    """One panel per cost: every record ({"score", "costs"}) as a grey dot, its Pareto front
    (`fronts[cost]`) as a red staircase, the budget's limit (`limits`) as a dashed line; PNG."""
    fig, axes = plt.subplots(1, len(fronts), figsize=(4.5 * len(fronts), 3.6), squeeze=False)
    try:
        for ax, (cost, front) in zip(axes[0], fronts.items()):
            ax.scatter([r["costs"][cost] for r in records], [r["score"] for r in records], s=10,
                       color="0.6", label=f"evaluated ({len(records)})")
            ax.step([r["costs"][cost] for r in front], [r["score"] for r in front], where="post",
                    color="tab:red", marker="o", ms=4, label=f"Pareto front ({len(front)})")
            if cost in limits:
                ax.axvline(limits[cost], color="black", ls="--", lw=1.0, label="budget")
            ax.set_xlabel(cost)
            ax.set_ylabel(score_name)
            ax.legend(fontsize=7)
        return _png(fig, dpi)
    finally:
        plt.close(fig)
