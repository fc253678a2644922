"""The train-step benchmark's parent mode: each configuration runs in a child process that
must import the project (here the tiny preset, one update)."""

import json

from tests.cli import run_module


def test_parent_runs_a_child_per_configuration_and_writes_its_row(tmp_path):
    out = tmp_path / "train_step.json"
    result = run_module(
        "bench.train_step",
        "--presets=tiny",
        "--batch=2",
        "--length=4",
        "--steps=1",
        f"--out={out}",
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (row,) = json.loads(out.read_text())["rows"]
    assert "error" not in row, row
    assert row["preset"] == "tiny" and row["step_wall_s_median"] > 0 and row["params"] > 0
