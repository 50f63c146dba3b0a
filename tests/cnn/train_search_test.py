import json
import os
import re
import subprocess
import sys

import pytest

from cnn.costs import FINAL_NETWORKS
from cnn.search_space import NAO_WS_SPACE, NUM_NODES
from nao_tf.common.errors import NaoError
from tests import uninterrupted

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The smoke config made smaller still: 10 supernet steps per epoch, 2 epochs (the pool is scored
# after each), a pool of 8; a checkpoint after every step. Under a budget of multiply-adds in the
# ImageNet mobile network that about half the random cells exceed.
BUDGET = 320_000_000
ARGS = ["--config=smoke", "--network=imagenet", "--max_mult_adds=320M",
        "--synthetic_train_images=192", "--num_valid=32", "--batch_size=16",
        "--eval_images=32", "--eval_batch_size=32", "--seed_archs=8", "--top_k=4",
        "--new_archs=4", "--random_archs=1", "--controller_epochs=300",
        "--controller_batch_size=8", "--log_every_steps=1", "--save_every_seconds=0",
        "--deterministic"]
ENV = {**uninterrupted.ENV, "PYTHONPATH": ROOT}


def _run_until(output_dir, marker):
    """Runs the search, SIGKILLs it on the first output line containing `marker`; returns the
    lines printed until then."""
    child = subprocess.Popen([sys.executable, "-m", "cnn.train_search", *ARGS,
                              f"--output_dir={output_dir}"], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, env=ENV)
    lines = []
    for line in child.stdout:
        lines.append(line)
        if marker in line:
            child.kill()
            break
    child.wait(timeout=120)
    assert child.returncode == -9, f"the run ended before {marker!r}:\n{''.join(lines)[-3000:]}"
    return lines


def _training_ranges(lines):
    return [tuple(map(int, m.groups())) for line in lines
            if (m := re.search(r"training steps (\d+) -> (\d+)", line))]


@pytest.mark.slow
def test_killed_in_supernet_training_and_in_controller_training_resumes_without_redoing(
        tmp_path):
    """... and, with --deterministic, ends exactly as an uninterrupted run."""
    reference = uninterrupted.start("cnn.train_search", ARGS, tmp_path / "uninterrupted")
    out = tmp_path / "search"
    first = _run_until(out, "supernet epoch 1 step 6/10")
    assert _training_ranges(first) == [(0, 10)]

    # Resumes from the last step saved (every step here), scores the pool, and is killed while
    # the controller trains.
    second = _run_until(out, "iteration 0: train")
    (start, end), = _training_ranges(second)
    assert 5 <= start < end == 10  # killed after step 6 was logged, before or after its save
    assert any("resumed from" in line and f"(step {start}," in line for line in second)
    # Each process's first step, tracing included, has a line of its own.
    for lines, step in ((first, 1), (second, start + 1)):
        assert any(f"step {step}/10" in line and "first step" in line for line in lines)
    assert any("scored 8/8 architectures" in line for line in second)

    third = subprocess.run([sys.executable, "-m", "cnn.train_search", *ARGS,
                            f"--output_dir={out}"], cwd=ROOT, capture_output=True, text=True,
                           timeout=600, env=ENV)
    assert third.returncode == 0, third.stderr[-3000:]
    lines = third.stdout.splitlines()
    # Neither the supernet's first 10 steps nor the first scoring are done again.
    assert _training_ranges(lines) == [(10, 20)]
    assert not any("iteration 0: evaluate" in line for line in lines)
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    for iteration in (0, 1):
        archs = [r["arch"] for r in history if r["iteration"] == iteration]
        assert len(archs) == len(set(archs)) == 8
    best = json.loads((out / "best_arch.json").read_text())
    assert best["space"] == "nao_ws" and len(best["top"]) == 5
    assert best["score"] == max(r["score"] for r in history if r["iteration"] == 1)
    assert (out / "best_arch.png").stat().st_size > 0
    assert "top 5:" in third.stdout
    # No cell over the budget was ever evaluated; the best is within it, the Pareto fronts hold
    # the cheapest cell and the best, with costs.
    imagenet = FINAL_NETWORKS["imagenet"]
    costs = {r["arch"]: imagenet.costs(NAO_WS_SPACE.parse(r["arch"])) for r in history}
    assert all(c["mult_adds"] <= BUDGET for c in costs.values())
    assert best["budget"] == {"mult_adds": BUDGET} and best["costs"] == costs[best["arch"]]
    for name, front in best["pareto"].items():
        assert front[0]["costs"][name] == min(c[name] for c in costs.values())
        assert front[-1]["score"] == best["score"]
        assert all(r["costs"] == costs[r["arch"]] for r in front)
    assert (out / "pareto.png").stat().st_size > 0
    uninterrupted.assert_same_end(reference, tmp_path / "uninterrupted", out)

    # A rerun with other search settings (here a search setting and the budget) is refused,
    # naming each change, before it writes anything (no settings record, no TensorBoard events);
    # so is one over a damaged search state. In this process: the refusal is the command's own,
    # which cli.run prints as one line with exit code 2 (test_a_user_error_prints_one_line...).
    before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    with pytest.raises(NaoError) as refused:
        _search(out, "--random_archs=3", "--max_mult_adds=400M")
    assert "search.random_archs: 1 -> 3" in str(refused.value), refused.value
    assert "budget: 'mult_adds <= 320000000 (counted in the imagenet network, N=4 F=42, " \
        "224x224, 1000 classes)' -> 'mult_adds <= 400000000" in str(refused.value)
    assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before
    (out / "state.json").write_text("{")
    before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    with pytest.raises(NaoError, match="not valid JSON"):
        _search(out)
    assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before


def _search(out, *argv):
    """The kill test's search in this process (--deterministic is cli.run's flag, not the
    task's)."""
    _search_in_process([*(a for a in ARGS if a != "--deterministic"), *argv,
                        f"--output_dir={out}"])


def _search_in_process(argv):
    from absl import flags

    from cnn.task import TASK
    from nao_tf.commands import weight_sharing_search

    values = flags.FlagValues()
    weight_sharing_search.define_flags(TASK, values)
    values(["prog", *argv])
    weight_sharing_search.run(TASK, values)


@pytest.mark.slow
def test_a_user_error_prints_one_line_and_exits_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "cnn.train_search", "--config=smoke",
                           f"--output_dir={tmp_path / 'run'}", "--top_k=50"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=ENV)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == \
        "error: --top_k=50 exceeds the pool size --seed_archs=16"
    assert "Traceback" not in proc.stderr and not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, message", [
    (["--arch_pool=/nonexistent/pool"], "/nonexistent/pool: file not found"),
    (["--predictor_heads=0"], "flag --predictor_heads=0: 0 is not a positive integer"),
    (["--ranking_weight=2"], "flag --ranking_weight=2: 2.0 is not a number in the range "
                             r"\[0.0, 1.0\]"),
])
def test_user_errors_stop_before_anything_is_written(tmp_path, args, message):
    """In this process: each is the command's (or absl's) error, which cli.run prints as one
    line with exit code 2 (the test above)."""
    from absl import flags

    with pytest.raises((NaoError, flags.IllegalFlagValueError), match=message):
        _search_in_process(["--config=smoke", f"--output_dir={tmp_path / 'run'}", *args])
    assert not (tmp_path / "run").exists()


# NAO_pytorch 418ff71, NAO_V1/train_search.py lines 32-46 and 52-76, verbatim: the defaults the
# `--config=nao_pytorch_v1` preset reproduces.
V1_ARGPARSE = """
parser.add_argument('--child_batch_size', type=int, default=64)
parser.add_argument('--child_eval_batch_size', type=int, default=500)
parser.add_argument('--child_epochs', type=int, default=150)
parser.add_argument('--child_layers', type=int, default=3)
parser.add_argument('--child_nodes', type=int, default=5)
parser.add_argument('--child_channels', type=int, default=20)
parser.add_argument('--child_cutout_size', type=int, default=None)
parser.add_argument('--child_grad_bound', type=float, default=5.0)
parser.add_argument('--child_lr_max', type=float, default=0.025)
parser.add_argument('--child_lr_min', type=float, default=0.001)
parser.add_argument('--child_keep_prob', type=float, default=1.0)
parser.add_argument('--child_drop_path_keep_prob', type=float, default=0.9)
parser.add_argument('--child_l2_reg', type=float, default=3e-4)
parser.add_argument('--child_use_aux_head', action='store_true', default=False)
parser.add_argument('--child_eval_epochs', type=str, default='30')
parser.add_argument('--controller_seed_arch', type=int, default=600)
parser.add_argument('--controller_expand', type=int, default=None)
parser.add_argument('--controller_new_arch', type=int, default=300)
parser.add_argument('--controller_encoder_layers', type=int, default=1)
parser.add_argument('--controller_encoder_hidden_size', type=int, default=96)
parser.add_argument('--controller_encoder_emb_size', type=int, default=48)
parser.add_argument('--controller_mlp_layers', type=int, default=3)
parser.add_argument('--controller_mlp_hidden_size', type=int, default=200)
parser.add_argument('--controller_decoder_layers', type=int, default=1)
parser.add_argument('--controller_decoder_hidden_size', type=int, default=96)
parser.add_argument('--controller_source_length', type=int, default=40)
parser.add_argument('--controller_encoder_length', type=int, default=20)
parser.add_argument('--controller_decoder_length', type=int, default=40)
parser.add_argument('--controller_encoder_dropout', type=float, default=0)
parser.add_argument('--controller_mlp_dropout', type=float, default=0.1)
parser.add_argument('--controller_decoder_dropout', type=float, default=0)
parser.add_argument('--controller_l2_reg', type=float, default=1e-4)
parser.add_argument('--controller_encoder_vocab_size', type=int, default=12)
parser.add_argument('--controller_decoder_vocab_size', type=int, default=12)
parser.add_argument('--controller_trade_off', type=float, default=0.8)
parser.add_argument('--controller_epochs', type=int, default=1000)
parser.add_argument('--controller_batch_size', type=int, default=100)
parser.add_argument('--controller_lr', type=float, default=0.001)
parser.add_argument('--controller_optimizer', type=str, default='adam')
parser.add_argument('--controller_grad_bound', type=float, default=5.0)
"""
# The same file's code: SGD(momentum=0.9) without Nesterov and CosineAnnealingLR(optimizer,
# child_epochs, child_lr_min) (lines 139-150); `max_step_size = 50`, lambda stepping by 1 until
# it exceeds 50, from `old_archs[:100]`, the new pool `old_archs[:len(old_archs) -
# num_new_archs] + new_archs` (lines 772-795).
V1_CODE = dict(momentum=0.9, nesterov=False, lambda_after_last_step=50 + 1, seeds=100,
               random_archs=0)


def _v1_defaults() -> dict:
    values = {}
    for name, kind, default in re.findall(
            r"add_argument\('--(\w+)', (?:type=(\w+)|action='store_true'), default=([^)]+)\)",
            V1_ARGPARSE):
        parse = {"int": int, "float": float, "": lambda s: s == "True",
                 "str": lambda s: s.strip("'")}[kind]
        values[name] = None if default == "None" else parse(default)
    assert len(values) == V1_ARGPARSE.count("add_argument")
    return values


def test_the_pytorch_v1_preset_resolves_to_the_ported_search_settings(tmp_path):
    from absl import flags

    from cnn.task import TASK
    from nao_tf.commands import cli, search_command, weight_sharing_search

    fv = flags.FlagValues()
    weight_sharing_search.define_flags(TASK, fv)
    fv(["prog", "--config=nao_pytorch_v1", f"--output_dir={tmp_path}"])
    TASK.apply_preset("ws", fv)
    task = cli.parse(TASK.require("ws"), fv)
    net, sgd = task.supernet, task.supernet.sgd
    controller = search_command.controller_config(TASK, "ws", task, NAO_WS_SPACE, fv)
    loop = weight_sharing_search.search_config(TASK, fv, 5)
    resolved = {
        "child_batch_size": net.batch_size, "child_eval_batch_size": net.eval_images,
        "child_epochs": net.epochs, "child_layers": net.num_cells,
        "child_nodes": NUM_NODES, "child_channels": net.filters,
        "child_grad_bound": sgd.grad_bound, "child_lr_max": sgd.lr_max,
        "child_lr_min": sgd.lr_min, "child_keep_prob": net.keep_prob,
        "child_drop_path_keep_prob": net.drop_path_keep_prob,
        "child_l2_reg": 2 * sgd.l2_reg,  # PyTorch's weight decay wd = 2 * l2_reg
        "child_use_aux_head": net.use_aux_head, "child_eval_epochs": str(net.eval_every_epochs),
        "controller_seed_arch": loop.seed_archs, "controller_new_arch": loop.new_archs,
        "controller_encoder_layers": controller.encoder_layers,
        "controller_encoder_hidden_size": controller.hidden_size,
        "controller_encoder_emb_size": controller.emb_size,
        "controller_mlp_layers": controller.mlp_layers,
        "controller_mlp_hidden_size": controller.mlp_hidden,
        "controller_decoder_layers": controller.decoder_layers,
        "controller_decoder_hidden_size": controller.hidden_size,
        "controller_source_length": controller.source_length,
        "controller_encoder_length": controller.encoder_length,
        "controller_decoder_length": controller.source_length,
        "controller_encoder_dropout": controller.encoder_dropout,
        "controller_mlp_dropout": controller.mlp_dropout,
        "controller_l2_reg": controller.weight_decay,
        "controller_encoder_vocab_size": controller.vocab_size,
        "controller_decoder_vocab_size": controller.vocab_size,
        "controller_trade_off": controller.trade_off, "controller_epochs": loop.controller_epochs,
        "controller_batch_size": controller.batch_size, "controller_lr": controller.learning_rate,
        "controller_grad_bound": controller.max_gradient_norm,
    }
    # No counterpart: the search never cuts out, the controller is always Adam here, its
    # decoder has no dropout and its data is never expanded beyond the branch swaps.
    unported = {"child_cutout_size": None, "controller_expand": None,
                "controller_optimizer": "adam", "controller_decoder_dropout": 0}
    v1 = _v1_defaults()
    assert v1.keys() == resolved.keys() | unported.keys()
    assert {k: v1[k] for k in unported} == unported
    assert resolved == pytest.approx({k: v1[k] for k in resolved}, rel=1e-12)
    assert net.eval_batch_size == v1["child_eval_batch_size"]  # one batch of 500 per cell
    assert (sgd.momentum, sgd.nesterov) == (V1_CODE["momentum"], V1_CODE["nesterov"])
    assert (sgd.t0, sgd.t_mul) == (net.epochs, 1)  # one cosine over the epochs
    assert (loop.max_lambda, loop.lambda_step) == (V1_CODE["lambda_after_last_step"], 1.0)
    assert (loop.top_k, loop.random_archs) == (V1_CODE["seeds"], V1_CODE["random_archs"])
    # PyTorch modules and Luong attention; the V1 supernet (uniform sampling, real stride-2
    # reductions, no extra 1x1 on h[i-1], scored without dropout); branch-swap augmentation.
    assert (controller.init, controller.encoder_dropout_site, controller.decay_after_clip,
            controller.attention) == ("pytorch", "embeddings", True, "general")
    assert (net.sample_policy, net.supernet_reduction, net.supernet_base_conv,
            net.score_dropout, loop.symmetry) == ("uniform", "stride2", False, False, True)


@pytest.mark.slow
@pytest.mark.usefixtures("restore_graph_optimizer")
def test_the_pytorch_v1_preset_at_smoke_sizes_ends_with_best_arch(tmp_path, capsys):
    """`--config=nao_pytorch_v1` with smoke sizes given by flag: the V1 supernet (drop-path, no
    aux head, no extra 1x1), controller and pool rules run a whole search, which ends by naming
    the port's final-training recipe."""
    from absl import flags

    from cnn.task import TASK
    from nao_tf.commands import weight_sharing_search

    sizes = ["--dataset=synthetic", "--synthetic_train_images=160", "--num_valid=32",
             "--num_cells=1", "--filters=8", "--batch_size=16", "--epochs=2",
             "--eval_every_epochs=1", "--t0=2", "--eval_images=32", "--eval_batch_size=32",
             "--seed_archs=8", "--top_k=4", "--new_archs=4", "--controller_epochs=50",
             "--controller_batch_size=8", "--seed=1"]
    fv = flags.FlagValues()
    weight_sharing_search.define_flags(TASK, fv)
    fv(["prog", "--config=nao_pytorch_v1", *sizes, f"--output_dir={tmp_path}"])
    result = weight_sharing_search.run(TASK, fv)
    settings = json.loads((tmp_path / "search_settings.json").read_text())
    assert {k: settings[k] for k in ("drop_path_keep_prob", "use_aux_head", "random_archs",
                                     "max_lambda", "supernet_base_conv")} == {
        "drop_path_keep_prob": 0.9, "use_aux_head": False, "random_archs": 0,
        "max_lambda": 51.0, "supernet_base_conv": False}
    best = json.loads((tmp_path / "best_arch.json").read_text())
    assert NAO_WS_SPACE.parse(best["arch"]) == result.best_arch
    history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    first = {r["arch"]: r["score"] for r in history if r["iteration"] == 0}
    second = [r["arch"] for r in history if r["iteration"] == 1]
    # V1's pool rule: the second pool is the n new cells and the best 8 - n old ones (no random
    # cells).
    new = [a for a in second if a not in first]
    kept = [score for a, score in first.items() if a in second]
    dropped = [score for a, score in first.items() if a not in second]
    assert len(first) == len(second) == 8 and 1 <= len(new) == len(dropped) <= 4
    assert min(kept) >= max(dropped)
    assert ("train the best with: scripts/train_final.sh cnn --config=naonet_b_36 "
            f"--arch={tmp_path / 'best_arch.json'}") in capsys.readouterr().out
