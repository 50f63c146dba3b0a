"""`--executor=ray`: candidates trained as Ray tasks on a real local Ray instance or cluster."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from absl import flags

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -r "
                                        "requirements-cluster.txt)")
from ray.cluster_utils import Cluster  # noqa: E402

from nao_tf.commands import standalone_search  # noqa: E402
from tests import toy_task  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
NODE = dict(num_cpus=1, object_store_memory=80 * 1024 * 1024)
# One Ray cluster on the machine at a time: under pytest -n, these tests share one test process.
pytestmark = pytest.mark.xdist_group("ray")


def _toy_flags(out, *argv):
    values = flags.FlagValues()
    standalone_search.define_flags(toy_task.TASK, values)
    values(["prog", "--config=tiny", f"--output_dir={out}", "--iterations=1", "--epochs=2",
            *argv])
    return values


@pytest.mark.slow
def test_ray_tasks_score_as_the_worker_threads(tmp_path):
    """The same search through Ray tasks (each in its own worker process, which rebuilds the task
    from its flags) records the same architectures with the same scores as through threads."""
    task = toy_task.TASK
    threads = standalone_search.run(task, _toy_flags(tmp_path / "threads"))
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        on_ray = standalone_search.run(task, _toy_flags(tmp_path / "ray", "--executor=ray"))
    finally:
        ray.shutdown()
    # Scores arrive in completion order, so the controller's data order (and from there its
    # generated architectures) may differ; the seed pool is the same, and so is every score.
    scores = [{r["arch"]: r["score"] for r in result.history} for result in (on_ray, threads)]
    first = [{r["arch"] for r in result.history if r["iteration"] == 0}
             for result in (on_ray, threads)]
    assert first[0] == first[1] and len(first[0]) == 8
    common = sorted(set(scores[0]) & set(scores[1]))
    np.testing.assert_allclose([scores[0][a] for a in common], [scores[1][a] for a in common],
                               rtol=1e-5)
    attempts = sorted((tmp_path / "ray" / "archs").glob("*/attempts.jsonl"))
    assert len(attempts) == len(on_ray.history)
    assert {len(p.read_text().splitlines()) for p in attempts} == {1}


def test_ray_executor_refuses_devices(tmp_path):
    values = _toy_flags(tmp_path, "--executor=ray", "--devices=/cpu:0")
    with pytest.raises(standalone_search.NaoError, match="--devices chooses the devices"):
        standalone_search.run(toy_task.TASK, values)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


@pytest.mark.parametrize("address, reason", [("127.0.0.1:1", "connection refused"),
                                             ("localhost", "not host:port")])
def test_an_address_with_no_cluster_is_one_line_before_anything_is_written(tmp_path, address,
                                                                           reason):
    with pytest.raises(standalone_search.NaoError, match=re.escape(
            f"--ray_address={address}: no Ray cluster answers there ({reason} after at most")):
        standalone_search.run(toy_task.TASK, _toy_flags(tmp_path / "run", "--executor=ray",
                                                        f"--ray_address={address}"))
    assert not (tmp_path / "run").exists()


def _attempts(out):
    """{candidate directory: [attempt records]} of the run in `out`."""
    found = {}
    for path in (out / "archs").glob("*/attempts.jsonl"):
        lines = path.read_text().splitlines()
        found[path.parent] = [json.loads(line) for line in lines if line.endswith("}")]
    return found


@pytest.mark.slow
def test_a_node_lost_mid_training_loses_no_candidate(tmp_path):
    """A NAS-Bench-201 search (--mode=nao --config=smoke) on a local cluster of two 1-CPU worker
    nodes: one node is removed while it trains a candidate; Ray re-runs that candidate on the
    other node and the search ends with every candidate recorded once."""
    cluster = Cluster(initialize_head=True, head_node_args=dict(
        NODE, num_cpus=0, include_dashboard=False))
    nodes = [cluster.add_node(**NODE) for _ in range(2)]
    cluster.wait_for_nodes()
    out = tmp_path / "search"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", RAY_DEDUP_LOGS="0",
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    proc = subprocess.Popen(
        ["bash", str(REPO / "scripts" / "train_search.sh"), "nb201", "--mode=nao",
         "--config=smoke", "--executor=ray", f"--ray_address={cluster.address}",
         f"--output_dir={out}", "--seed_archs=4", "--top_k=2", "--iterations=0",
         "--synthetic_images=1024"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        victim, removed_during = nodes[0], None
        deadline = time.monotonic() + 240
        while removed_during is None and time.monotonic() < deadline and proc.poll() is None:
            for directory, tries in _attempts(out).items():
                if tries and tries[-1]["node"] == victim.node_id and \
                        not (directory / "score.json").exists():
                    time.sleep(1.0)  # well into its training
                    cluster.remove_node(victim)
                    removed_during = directory
                    break
            time.sleep(0.2)
        if removed_during is None:
            proc.kill()
            pytest.fail("no candidate was seen training on the first node:\n"
                        + proc.communicate()[0][-4000:])
        assert not (removed_during / "score.json").exists(), "the candidate finished before"
        output, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
        cluster.shutdown()
    assert proc.returncode == 0, output[-4000:]
    tries = _attempts(out)[removed_during]
    assert [t["node"] for t in tries][:1] == [victim.node_id]
    assert len(tries) >= 2 and tries[-1]["node"] == nodes[1].node_id  # re-run on the other node
    state = json.loads((out / "state.json").read_text())
    archs = [r["arch"] for r in state["history"]]
    assert len(archs) == len(set(archs)) >= 4  # every candidate once
    recorded = (removed_during / "arch.txt").read_text().strip()
    assert recorded in archs
    assert len(list((out / "archs").glob("*/score.json"))) == len(archs)
    assert json.loads((out / "best_arch.json").read_text())["arch"] in archs


def _session_processes(session_dir: str) -> list[int]:
    from nao_tf.runtime.ray_executor import _in_session

    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and _in_session(entry, session_dir):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_killed_driver_resumes_without_retraining_and_stops_what_it_left_of_its_local_ray(
        tmp_path):
    """The driver of a NAS-Bench-201 search on the local Ray it started is killed once two
    candidates are recorded: the rerun stops the Ray processes the killed run left, trains only
    the other candidates, and shuts its own Ray down cleanly."""
    command = [sys.executable, "-m", "nb201.train_search_nao", "--config=smoke", "--seed_archs=4",
               "--top_k=2", "--iterations=0", "--executor=ray", f"--output_dir={tmp_path}"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    driver = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and driver.poll() is None and \
            len(list((tmp_path / "archs").glob("*/score.json"))) < 2:
        time.sleep(0.1)
    driver.kill()
    assert driver.wait(timeout=60) == -9, "the driver ended before two scores"
    recorded = {p.parent for p in (tmp_path / "archs").glob("*/score.json")}
    assert 2 <= len(recorded) < 4
    session = (tmp_path / "archs" / "ray_session.txt").read_text().strip()
    time.sleep(5)
    left = _session_processes(session)  # Ray's agents outlive a killed driver
    rerun = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert not [pid for pid in left if Path(f"/proc/{pid}").exists()
                and (Path(f"/proc/{pid}") / "stat").read_text().split()[2] != "Z"]
    if left:
        assert f"stopped {len(left)} process(es) of the local Ray a killed run left" in rerun.stdout
    attempts = _attempts(tmp_path)
    assert all(len(attempts[d]) == 1 for d in recorded)  # not trained again
    archs = [r["arch"] for r in json.loads((tmp_path / "state.json").read_text())["history"]]
    assert len(archs) == len(set(archs)) == 4
    assert len(list((tmp_path / "archs").glob("*/score.json"))) == 4
    assert (tmp_path / "best_arch.json").exists()
    new_session = (tmp_path / "archs" / "ray_session.txt").read_text().strip()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _session_processes(new_session):
        time.sleep(0.5)
    assert new_session != session and not _session_processes(new_session)  # a clean shutdown
