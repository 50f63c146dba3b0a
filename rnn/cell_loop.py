"""The fixed NAO cell's time loop, with a hand-written backward pass.

Forward, per time step t (see `rnn.model` for the symbols):
    [c_0, g_0] = x_proj_t + (h_{t-1} ⊙ m_h) W_0[d:],  s_0 = h_{t-1} + c_0 ⊙ (g_0 − h_{t-1})
    [c_i, g_i] = (s_{p_i} ⊙ m_h) W_i,                 s_i = s_{p_i} + c_i ⊙ (g_i − s_{p_i})
    h_t = mean(s_1..s_11)
with c = sigmoid(pre-activation) and g = f_i(pre-activation) (tanh for s_0). Nodes sharing a
predecessor p form a group whose W_i are concatenated into one matrix (`CellSchedule.groups`).

Why a hand-written backward pass: automatic differentiation through `tf.while_loop` computes
every weight gradient inside the loop, one (d × B) · (B × 2d) product per step, and accumulates
them. Here the backward loop only propagates state gradients and stores d[c, g] of every step;
each weight gradient is then ONE (d × T·B) · (T·B × 2d) product after the loop. The result is the
same gradient (a test compares it with automatic differentiation).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import tensorflow as tf

from rnn.search_space import ACTIVATIONS, RnnCell


@dataclasses.dataclass(frozen=True)
class CellSchedule:
    """The cell as groups (predecessor p, nodes reading p) in increasing p, and activations."""

    groups: tuple[tuple[int, tuple[int, ...]], ...]
    activations: tuple[str, ...]  # of nodes 1..11

    @classmethod
    def of(cls, arch: RnnCell) -> "CellSchedule":
        children: dict[int, list[int]] = {}
        for i, pred in enumerate(arch.predecessors, 1):
            children.setdefault(pred, []).append(i)
        # Increasing predecessor order is a valid schedule: pred(p) < p.
        return cls(tuple((p, tuple(nodes)) for p, nodes in sorted(children.items())),
                   arch.activations)

    @property
    def num_nodes(self) -> int:
        return len(self.activations)


_FNS = {"tanh": tf.tanh, "relu": tf.nn.relu, "sigmoid": tf.sigmoid, "identity": tf.identity}
ACTIVATION_FNS: dict[str, Callable[[tf.Tensor], tf.Tensor]] = {a: _FNS[a] for a in ACTIVATIONS}


def _activation_grad(name: str, g: tf.Tensor) -> tf.Tensor | None:
    """f'(pre-activation) from the activation's output g (None for identity: factor 1)."""
    if name == "tanh":
        return 1.0 - tf.square(g)
    if name == "sigmoid":
        return g * (1.0 - g)
    if name == "relu":
        return tf.cast(g > 0, g.dtype)
    return None


def _step_forward(x_proj_t, h, mask_h, w0_h, weights, sched: CellSchedule):
    """One step; returns (h_t, states s_0..s_n, gates c_0..c_n, candidates g_0..g_n)."""
    d = h.shape[-1]
    cg0 = x_proj_t + tf.matmul(h * mask_h, w0_h)
    c0, g0 = tf.sigmoid(cg0[:, :d]), tf.tanh(cg0[:, d:])
    states, gates, cands = {0: h + c0 * (g0 - h)}, {0: c0}, {0: g0}
    for (pred, nodes), w in zip(sched.groups, weights):
        s_prev = states[pred]
        cg = tf.matmul(s_prev * mask_h, w)
        for k, node in enumerate(nodes):
            c = tf.sigmoid(cg[:, 2 * d * k:2 * d * k + d])
            activation = ACTIVATION_FNS[sched.activations[node - 1]]
            g = activation(cg[:, 2 * d * k + d:2 * d * (k + 1)])
            states[node], gates[node], cands[node] = s_prev + c * (g - s_prev), c, g
    n = sched.num_nodes
    h_t = tf.add_n([states[i] for i in range(1, n + 1)]) / float(n)
    order = range(n + 1)
    return (h_t, tf.stack([states[i] for i in order]), tf.stack([gates[i] for i in order]),
            tf.stack([cands[i] for i in order]))


def scan_steps(step: Callable, x_proj: tf.Tensor,
               h0: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tuple[tf.Tensor, ...]]:
    """Runs `step(x_proj_t, h) -> (h, a, b, c)` over the time axis of `x_proj` from `h0`;
    returns (h_T, outputs [T, ...], (a, b, c) stacked over time: what the backward pass reads)."""
    steps = tf.shape(x_proj)[0]
    arrays = [tf.TensorArray(x_proj.dtype, size=steps) for _ in range(4)]

    def body(t, h, outs, s_arr, c_arr, g_arr):
        h, s, c, g = step(x_proj[t], h)
        return (t + 1, h, outs.write(t, h), s_arr.write(t, s), c_arr.write(t, c),
                g_arr.write(t, g))

    _, h_last, outs, s_arr, c_arr, g_arr = tf.while_loop(
        lambda t, *_: t < steps, body, (tf.constant(0), h0, *arrays), maximum_iterations=steps)
    return h_last, outs.stack(), (s_arr.stack(), c_arr.stack(), g_arr.stack())


def run_cell(x_proj: tf.Tensor, h0: tf.Tensor, mask_h: tf.Tensor, w0_h: tf.Tensor,
             weights: list[tf.Tensor], sched: CellSchedule) -> tuple[tf.Tensor, tf.Tensor]:
    """Runs the cell over x_proj [T, B, 2d] from h0 [B, d]; returns (outputs [T, B, d], h_T).

    `mask_h` [B, d] is the variational mask on h_{t-1} and node inputs (ones at evaluation),
    `w0_h` = W_0[d:], `weights[j]` the concatenated W_i of group j. Differentiable in x_proj,
    h0, w0_h and weights.
    """

    @tf.custom_gradient
    def cell(x_proj, h0, w0_h, *weights):
        h_last, outputs, saved = scan_steps(  # saved: [T, n+1, B, d] each
            lambda x_t, h: _step_forward(x_t, h, mask_h, w0_h, weights, sched), x_proj, h0)

        def grad(d_outputs, d_last):
            return _backward(x_proj, h0, mask_h, w0_h, list(weights), sched, outputs, saved,
                             d_outputs, d_last)

        return (outputs, h_last), grad

    return cell(x_proj, h0, w0_h, *weights)


def _backward(x_proj, h0, mask_h, w0_h, weights, sched, outputs, saved, d_outputs, d_last):
    """Gradients of (outputs, h_T) -> (x_proj, h0, w0_h, *weights); see the module docstring."""
    states, gates, cands = saved
    steps, d = tf.shape(x_proj)[0], h0.shape[-1]
    n = sched.num_nodes
    d_outputs = tf.zeros_like(outputs) if d_outputs is None else d_outputs
    d_last = tf.zeros_like(h0) if d_last is None else d_last
    h_prev_all = tf.concat([h0[None], outputs[:-1]], axis=0)  # h_{t-1} for every t

    def body(i, dh, dcg0_arr, dcg_arr):
        t = steps - 1 - i
        s, c, g = states[t], gates[t], cands[t]
        dh_t = d_outputs[t] + dh
        ds = {node: dh_t / float(n) for node in range(1, n + 1)}
        ds[0] = tf.zeros_like(dh_t)
        group_dcgs = []
        for (pred, nodes), w in reversed(list(zip(sched.groups, weights))):
            s_prev = s[pred]
            dcgs, d_prev = [], ds[pred]
            for node in nodes:
                c_i, g_i, ds_i = c[node], g[node], ds[node]
                dc = ds_i * (g_i - s_prev) * c_i * (1.0 - c_i)
                dg = ds_i * c_i
                act_grad = _activation_grad(sched.activations[node - 1], g_i)
                dg = dg if act_grad is None else dg * act_grad
                d_prev += ds_i * (1.0 - c_i)
                dcgs += [dc, dg]
            dcg = tf.concat(dcgs, axis=-1)
            ds[pred] = d_prev + tf.matmul(dcg, w, transpose_b=True) * mask_h
            group_dcgs.append(dcg)
        h_prev = h_prev_all[t]
        c0, g0, ds0 = c[0], g[0], ds[0]
        dcg0 = tf.concat([ds0 * (g0 - h_prev) * c0 * (1.0 - c0),
                          ds0 * c0 * (1.0 - tf.square(g0))], axis=-1)
        dh_prev = ds0 * (1.0 - c0) + tf.matmul(dcg0, w0_h, transpose_b=True) * mask_h
        return (i + 1, dh_prev, dcg0_arr.write(t, dcg0),
                dcg_arr.write(t, tf.concat(group_dcgs[::-1], axis=-1)))

    arrays = [tf.TensorArray(x_proj.dtype, size=steps) for _ in range(2)]
    _, dh0, dcg0_arr, dcg_arr = tf.while_loop(
        lambda i, *_: i < steps, body, (tf.constant(0), d_last, *arrays),
        maximum_iterations=steps)
    d_x_proj = dcg0_arr.stack()  # [T, B, 2d]
    dcg_all = dcg_arr.stack()  # [T, B, sum over groups of 2d·k]

    def flat(v):
        return tf.reshape(v, [-1, v.shape[-1]])

    d_w0_h = tf.matmul(flat(h_prev_all * mask_h), flat(d_x_proj), transpose_a=True)
    widths = [2 * d * len(nodes) for _, nodes in sched.groups]
    d_weights = [tf.matmul(flat(states[:, pred] * mask_h), flat(dcg), transpose_a=True)
                 for (pred, _), dcg in zip(sched.groups, tf.split(dcg_all, widths, axis=-1))]
    return [d_x_proj, dh0, d_w0_h] + d_weights
