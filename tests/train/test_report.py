"""Sweep reports from synthetic metrics: table values, IQM with CIs, curves, missing runs."""

import json
import os

import numpy as np
import pytest
import yaml

from genreward_jax import report
from genreward_jax.sweep import SweepError, load_sweep

# Final dense returns per (task, method) and seed; the evaluations before rise linearly to them.
FINALS = {
    ("a", "m1"): [100.0, 200.0],
    ("a", "m2"): [300.0, 300.0],
    ("b", "m1"): [50.0, 50.0],
    ("b", "m2"): [10.0, 30.0],
}


@pytest.fixture()
def sweep(tmp_path):
    spec = {
        "name": "demo",
        "logdir": str(tmp_path / "runs"),
        "axes": {"task": {"a": {}, "b": {}}, "method": {"m1": {}, "m2": {}}, "seed": [0, 1]},
    }
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    _, runs = load_sweep(str(path))
    for run in runs:
        task, method, seed = report.group_of(run)
        final = FINALS[(task, method)][int(seed.split("_")[1])]
        os.makedirs(run.logdir)
        with open(os.path.join(run.logdir, "metrics.jsonl"), "w") as f:
            for step, fraction in ((10, 0.5), (20, 1.0)):
                f.write(
                    json.dumps(
                        {
                            "step": step,
                            "eval/dense_return": final * fraction,
                            "eval/success": float(fraction == 1.0),
                        }
                    )
                    + "\n"
                )
    return str(path), runs


def test_tables_iqm_and_curves(sweep, tmp_path):
    path, runs = sweep
    out = report.write_report(path, str(tmp_path / "report"), reps=500)
    rows = {(r["task"], r["method"]): r for r in out["rows"]}
    assert rows[("a", "m1")]["return_mean"] == 150.0 and rows[("a", "m1")]["return_std"] == 50.0
    assert rows[("b", "m2")]["return_mean"] == 20.0 and rows[("b", "m2")]["seeds"] == 2
    assert rows[("a", "m2")]["success_mean"] == 1.0 and rows[("a", "m2")]["final_step"] == 20
    # Normalised by the best mean per task (a: 300, b: 50): m1 {1/3, 2/3, 1, 1} -> IQM 5/6,
    # m2 {1, 1, 0.2, 0.6} -> IQM 0.8 (the middle two of four).
    iqm = out["iqm"]
    assert iqm["m1"][0] == pytest.approx(5 / 6) and iqm["m2"][0] == pytest.approx(0.8)
    for value, low, high in iqm.values():
        assert low <= value <= high
    for name in ("curves.png", "final.md", "final.csv", "iqm.md"):
        assert (tmp_path / "report" / name).stat().st_size > 100
    text = (tmp_path / "report" / "final.md").read_text()
    assert "| a | m1 | 2 | 20 | 150.0 ± 50.0 | 1.00 ± 0.00 |" in text
    assert (tmp_path / "report" / "final.csv").read_text().count("\n") == 5
    assert out["missing"] == []


def test_runs_without_evaluations_are_listed(sweep):
    path, runs = sweep
    os.remove(os.path.join(runs[0].logdir, "metrics.jsonl"))
    data, missing = report.collect(runs)
    assert missing == [runs[0].name]
    assert len(data["a"]["m1"]) == 1
    steps, returns, _ = report._common(data["b"]["m2"])
    np.testing.assert_array_equal(steps, [10, 20])
    assert returns.shape == (2, 2)


def test_nothing_to_report_is_a_clear_error(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text(
        yaml.safe_dump({"name": "e", "logdir": str(tmp_path / "r"), "axes": {"seed": [0]}})
    )
    with pytest.raises(SweepError, match="no run of sweep e has an evaluation yet"):
        report.write_report(str(path))
