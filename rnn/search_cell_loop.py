"""The weight-sharing supernet's time loop: any cell, given as an int32 tensor, with a
hand-written backward pass.

A cell enters as `preds` [K, n] (p_i of node i = 1..n) and `acts` [K, n] (activation codes a_i,
`rnn.search_space.ACTIVATIONS`) for K cells run side by side on the same inputs (K = 1 for
training, K > 1 to score several cells in one call), with its node weights already gathered from
the supernet's blocks: `w_nodes` [K, n, d, 2d] (W_{i, p_i, a_i}, see `rnn.supernet`).

Forward, per time step t and cell k (symbols as in `rnn.model`):
    [c_0, g_0] = x_proj_t + (h_{t-1} ⊙ m_h) W_0[d:],   s_0 = h_{t-1} + c_0 ⊙ (g_0 − h_{t-1})
    [c_i, g_i] = (s_{p_i} ⊙ m_h) W_{i,p_i,a_i},        s_i = s_{p_i} + c_i ⊙ (f_{a_i}(g_i) − s_{p_i})
    h_t = mean(s_0..s_n)   (the original supernet averages s_0 too; the final cell does not)
Predecessors are gathered with a dynamic index and the activation is a one-hot mix of the four
candidates, so one trace serves every cell.

Backward: as `rnn.cell_loop`, the loop only propagates state gradients and stores d[c, g]; each
weight gradient is one (d × T·B) · (T·B × 2d) product after the loop.
"""

from __future__ import annotations

import tensorflow as tf

from rnn.cell_loop import scan_steps

NUM_ACTIVATIONS = 4  # tanh, relu, sigmoid, identity (the order of rnn.search_space.ACTIVATIONS)


def _chosen(onehot: tf.Tensor, candidates: list[tf.Tensor]) -> tf.Tensor:
    """candidates[a_k] for each cell k (a_k one-hot in `onehot` [K, 4]), candidates [K, B, d].
    Selected, not weighted: an unused candidate that overflows (relu or identity of a huge
    pre-activation, easily reached in float16) would turn 0 x inf into NaN."""
    w = onehot[:, :, None, None]
    return tf.add_n([tf.where(w[:, a] > 0, c, tf.zeros_like(c)) for a, c in enumerate(candidates)])


def mix_activation(pre: tf.Tensor, onehot: tf.Tensor) -> tf.Tensor:
    """f_a(pre) with a given as one-hot weights `onehot` [K, 4] broadcast over pre [K, B, d]."""
    return _chosen(onehot, [tf.tanh(pre), tf.nn.relu(pre), tf.sigmoid(pre), pre])


def _mix_activation_grad(g: tf.Tensor, onehot: tf.Tensor) -> tf.Tensor:
    """f_a'(pre) from the activation's output g = f_a(pre)."""
    return _chosen(onehot, [1.0 - tf.square(g), tf.cast(g > 0, g.dtype), g * (1.0 - g),
                            tf.ones_like(g)])


def _gather_state(states: tf.Tensor, preds_i: tf.Tensor) -> tf.Tensor:
    """states [K, m, B, d], preds_i [K] -> states[k, preds_i[k]] as [K, B, d]."""
    return tf.gather(states, preds_i, axis=1, batch_dims=1)


def step_forward(x_proj_t: tf.Tensor, h: tf.Tensor, mask_h: tf.Tensor, w0_h: tf.Tensor,
                 w_nodes: tf.Tensor, preds: tf.Tensor, onehots: tf.Tensor):
    """One time step for K cells; h [K, B, d], x_proj_t [B, 2d] (shared by the K cells).

    Returns (h_t, states, gates, candidates), the last three [K, n+1, B, d].
    """
    d = h.shape[-1]
    n = w_nodes.shape[1]
    cg0 = x_proj_t + tf.matmul(h * mask_h, w0_h)
    c0, g0 = tf.sigmoid(cg0[..., :d]), tf.tanh(cg0[..., d:])
    states, gates, cands = [h + c0 * (g0 - h)], [c0], [g0]
    for i in range(n):
        s_prev = _gather_state(tf.stack(states, axis=1), preds[:, i])
        cg = tf.matmul(s_prev * mask_h, w_nodes[:, i])
        c = tf.sigmoid(cg[..., :d])
        g = mix_activation(cg[..., d:], onehots[:, i])
        states.append(s_prev + c * (g - s_prev))
        gates.append(c)
        cands.append(g)
    h_t = tf.add_n(states) / float(n + 1)
    return h_t, tf.stack(states, axis=1), tf.stack(gates, axis=1), tf.stack(cands, axis=1)


def _onehots(acts: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    return tf.one_hot(acts, NUM_ACTIVATIONS, dtype=dtype)


def run_search_cell(x_proj: tf.Tensor, h0: tf.Tensor, mask_h: tf.Tensor, w0_h: tf.Tensor,
                    w_nodes: tf.Tensor, preds: tf.Tensor,
                    acts: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Runs K cells over x_proj [T, B, 2d] from h0 [K, B, d]; returns (outputs [T, K, B, d], h_T).

    `mask_h` [B, d] is the variational mask on h_{t-1} and node inputs (ones at evaluation).
    Differentiable in x_proj, h0, w0_h and w_nodes (hand-written backward pass).
    """
    onehots = _onehots(acts, x_proj.dtype)

    @tf.custom_gradient
    def cell(x_proj, h0, w0_h, w_nodes):
        h_last, outputs, saved = scan_steps(  # saved: [T, K, n+1, B, d] each
            lambda x_t, h: step_forward(x_t, h, mask_h, w0_h, w_nodes, preds, onehots),
            x_proj, h0)

        def grad(d_outputs, d_last):
            return _backward(x_proj, h0, mask_h, w0_h, w_nodes, preds, onehots, outputs, saved,
                             d_outputs, d_last)

        return (outputs, h_last), grad

    return cell(x_proj, h0, w0_h, w_nodes)


def _backward(x_proj, h0, mask_h, w0_h, w_nodes, preds, onehots, outputs, saved, d_outputs,
              d_last):
    """Gradients of (outputs, h_T) -> (x_proj, h0, w0_h, w_nodes)."""
    states, gates, cands = saved
    steps = tf.shape(x_proj)[0]
    k_cells, n = w_nodes.shape[0], w_nodes.shape[1]
    d_outputs = tf.zeros_like(outputs) if d_outputs is None else d_outputs
    d_last = tf.zeros_like(h0) if d_last is None else d_last
    h_prev_all = tf.concat([h0[None], outputs[:-1]], axis=0)  # h_{t-1} for every t
    cell_index = tf.range(k_cells)

    def body(i, dh, dcg0_arr, dcg_arr):
        t = steps - 1 - i
        s, c, g = states[t], gates[t], cands[t]  # [K, n+1, B, d]
        dh_t = d_outputs[t] + dh
        ds = tf.tile((dh_t / float(n + 1))[:, None], [1, n + 1, 1, 1])
        node_dcgs = []
        for node in range(n, 0, -1):
            pred = preds[:, node - 1]
            s_prev = _gather_state(s, pred)
            c_i, g_i, ds_i = c[:, node], g[:, node], ds[:, node]
            dc = ds_i * (g_i - s_prev) * c_i * (1.0 - c_i)
            dg = ds_i * c_i * _mix_activation_grad(g_i, onehots[:, node - 1])
            dcg = tf.concat([dc, dg], axis=-1)
            d_prev = ds_i * (1.0 - c_i) + tf.matmul(dcg, w_nodes[:, node - 1],
                                                    transpose_b=True) * mask_h
            ds = tf.tensor_scatter_nd_add(ds, tf.stack([cell_index, pred], axis=1), d_prev)
            node_dcgs.append(dcg)
        h_prev = h_prev_all[t]
        c0, g0, ds0 = c[:, 0], g[:, 0], ds[:, 0]
        dcg0 = tf.concat([ds0 * (g0 - h_prev) * c0 * (1.0 - c0),
                          ds0 * c0 * (1.0 - tf.square(g0))], axis=-1)
        dh_prev = ds0 * (1.0 - c0) + tf.matmul(dcg0, w0_h, transpose_b=True) * mask_h
        return (i + 1, dh_prev, dcg0_arr.write(t, dcg0),
                dcg_arr.write(t, tf.stack(node_dcgs[::-1], axis=1)))

    arrays = [tf.TensorArray(x_proj.dtype, size=steps) for _ in range(2)]
    _, dh0, dcg0_arr, dcg_arr = tf.while_loop(
        lambda i, *_: i < steps, body, (tf.constant(0), d_last, *arrays),
        maximum_iterations=steps)
    dcg0_all = dcg0_arr.stack()  # [T, K, B, 2d]
    dcg_all = dcg_arr.stack()  # [T, K, n, B, 2d]
    d_x_proj = tf.reduce_sum(dcg0_all, axis=1)
    d_w0_h = tf.einsum("tkbd,tkbe->de", h_prev_all * mask_h, dcg0_all)
    # The input of node i at every step: s_{p_i} ⊙ m_h.
    node_inputs = tf.gather(tf.transpose(states, [1, 0, 2, 3, 4]), preds, axis=2,
                            batch_dims=1) * mask_h  # [K, T, n, B, d]
    d_w_nodes = tf.einsum("ktibd,tkibe->kide", node_inputs, dcg_all)
    return [d_x_proj, dh0, d_w0_h, d_w_nodes]
