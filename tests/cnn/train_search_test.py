import json
import os
import re
import subprocess
import sys

import pytest

from cnn.costs import FINAL_NETWORKS
from cnn.search_space import NAO_WS_SPACE
from tests import uninterrupted

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The smoke config made smaller still: 10 supernet steps per epoch, 2 epochs (the pool is scored
# after each), a pool of 8; a checkpoint after every step. Under a budget of multiply-adds in the
# ImageNet mobile network that about half the random cells exceed.
BUDGET = 320_000_000
ARGS = ["--config=smoke", "--network=imagenet", "--max_mult_adds=320M", "--synthetic_train_images=192", "--num_valid=32", "--batch_size=16",
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

    # A rerun with another search setting is refused before it writes anything (no settings
    # record, no TensorBoard events).
    before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    refused = subprocess.run([sys.executable, "-m", "cnn.train_search", *ARGS,
                              "--random_archs=3", f"--output_dir={out}"], cwd=ROOT,
                             capture_output=True, text=True, timeout=600, env=ENV)
    assert refused.returncode == 2 and "search.random_archs: 1 -> 3" in refused.stderr, \
        refused.stderr[-2000:]
    assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before
    refused = subprocess.run([sys.executable, "-m", "cnn.train_search", *ARGS,
                              "--max_mult_adds=400M", f"--output_dir={out}"], cwd=ROOT,
                             capture_output=True, text=True, timeout=600, env=ENV)
    assert refused.returncode == 2 and "budget: 'mult_adds <= 320000000 (counted in the imagenet " \
        "network, N=4 F=42, 224x224, 1000 classes)' -> 'mult_adds <= 400000000" in refused.stderr, refused.stderr[-2000:]
    assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before
    (out / "state.json").write_text("{")  # so is one over a damaged search state
    before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    refused = subprocess.run([sys.executable, "-m", "cnn.train_search", *ARGS,
                              f"--output_dir={out}"], cwd=ROOT, capture_output=True, text=True,
                             timeout=600, env=ENV)
    assert refused.returncode == 2 and "not valid JSON" in refused.stderr, refused.stderr[-2000:]
    assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["--top_k=50"], "error: --top_k=50 exceeds the pool size --seed_archs=16"),
    (["--arch_pool=/nonexistent/pool"], "error: /nonexistent/pool: file not found"),
    (["--predictor_heads=0"], "error: flag --predictor_heads=0: 0 is not a positive integer"),
    (["--ranking_weight=2"], "error: flag --ranking_weight=2: 2.0 is not a number in the range "
                             "[0.0, 1.0]"),
])
def test_user_errors_print_one_line_and_exit_2(tmp_path, args, message):
    proc = subprocess.run([sys.executable, "-m", "cnn.train_search", "--config=smoke",
                           f"--output_dir={tmp_path / 'run'}", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=ENV)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and not (tmp_path / "run").exists()
