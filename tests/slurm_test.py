"""scripts/slurm/: each node's TF_CONFIG from the allocation, with SLURM's `scontrol` and `srun`
played by two small scripts (srun runs the task once per node, SLURM_PROCID 0 and 1)."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script", ["train_final", "train_search"])
def test_each_node_runs_the_command_with_its_own_tf_config(tmp_path, script):
    bin_dir, submit = tmp_path / "bin", tmp_path / "submit"
    (bin_dir).mkdir()
    (bin_dir / "scontrol").write_text('#!/bin/sh\nprintf "node-a\\nnode-b\\n"\n')
    (bin_dir / "srun").write_text('#!/bin/sh\nshift\nfor i in 0 1; do SLURM_PROCID=$i "$@"; done\n')
    (submit / "scripts").mkdir(parents=True)
    shutil.copytree(ROOT / "scripts" / "slurm", submit / "scripts" / "slurm")
    (submit / "scripts" / f"{script}.sh").write_text(  # stands in for the real command
        '#!/bin/sh\necho "$TF_CONFIG|$*"\n')
    for path in [*bin_dir.iterdir(), submit / "scripts" / f"{script}.sh"]:
        path.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", SLURM_SUBMIT_DIR=str(submit),
               SLURM_JOB_NODELIST="node-[a-b]", NAO_TF_PORT="2222")
    done = subprocess.run(["bash", str(ROOT / "scripts" / "slurm" / f"{script}.sh"), "cnn",
                           "--output_dir=/shared/run"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split("|")[1] for line in lines] == ["cnn --output_dir=/shared/run"] * 2
    configs = [json.loads(line.split("|")[0]) for line in lines]
    assert [c["task"] for c in configs] == [{"type": "worker", "index": i} for i in (0, 1)]
    assert all(c["cluster"] == {"worker": ["node-a:2222", "node-b:2222"]} for c in configs)
