"""The paired train-step benchmark runs two trees' steps in one process and reports per-pair
ratios (here the same tree twice, on the tiny preset)."""

import json

from tests.cli import ROOT, run_module


def test_paired_benchmark_of_a_tree_against_itself(tmp_path):
    out = tmp_path / "ab.json"
    result = run_module(
        "bench.train_step_ab",
        f"--a={ROOT}",
        f"--b={ROOT}",
        "--preset=tiny",
        "--batch=2",
        "--length=4",
        "--steps=3",
        f"--out={out}",
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    row = json.loads(out.read_text())
    assert len(row["a_s"]) == len(row["b_s"]) == len(row["ratios"]) == 3
    assert all(t > 0 for t in row["a_s"] + row["b_s"] + row["a_cpu_s"] + row["b_cpu_s"])
    assert row["ratio_median"] > 0 and row["compile_a_s"] > 0 and row["compile_b_s"] > 0
    assert "pair ratios:" in result.stdout
