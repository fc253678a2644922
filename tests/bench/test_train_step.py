"""The train-step benchmark's parent mode: each configuration runs in a child process that
must import the project (here the tiny preset, one update)."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_parent_runs_a_child_per_configuration_and_writes_its_row(tmp_path):
    out = tmp_path / "train_step.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.train_step",
            "--presets=tiny",
            "--batch=2",
            "--length=4",
            "--steps=1",
            f"--out={out}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (row,) = json.loads(out.read_text())["rows"]
    assert "error" not in row, row
    assert row["preset"] == "tiny" and row["step_wall_s_median"] > 0 and row["params"] > 0
