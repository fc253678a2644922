"""Sweeps: grid expansion, the shipped sweep files, skip/resume, local and submitit runs."""

import glob
import os

import pytest
import yaml

from genreward_jax.sweep import Run, SweepError, expand, load_sweep, run_state
from tests.cli import run_module

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SPEC = {
    "name": "demo",
    "logdir": "runs/demo",
    "flagfiles": ["configs/quickstart.cfg"],
    "flags": {"steps": 100, "video": False},
    "axes": {
        "method": {
            "genreward": {},
            "dreamerv3": {"flagfiles": ["configs/baseline_dreamerv3.cfg"], "flags": {"lr": 1e-3}},
        },
        "seed": [0, 1],
    },
}


def test_expansion_is_the_grid_in_axis_order():
    name, runs = expand(SPEC)
    assert name == "demo"
    assert [r.name for r in runs] == [
        "genreward/seed_0",
        "genreward/seed_1",
        "dreamerv3/seed_0",
        "dreamerv3/seed_1",
    ]
    run = runs[2]
    assert run.logdir == os.path.join("runs/demo", "dreamerv3", "seed_0")
    assert run.args == (
        "--flagfile=configs/quickstart.cfg",
        "--flagfile=configs/baseline_dreamerv3.cfg",
        "--steps=100",
        "--novideo",
        "--lr=0.001",
        "--seed=0",
        f"--logdir={run.logdir}",
    )
    assert run.steps == 100
    assert run.command("py")[:3] == ["py", "-m", "genreward_jax.main"]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"colour": 1}, "unknown top-level keys"),
        ({"axes": {}}, "non-empty mapping"),
        ({"axes": {"seed": 3}}, "mapping of named values or a list"),
        ({"axes": {"seed": []}}, "at least one value"),
        ({"axes": {"m": {"a b": {}}}}, "letters, digits"),
        ({"axes": {"m": {"a": {"flag": {}}}}}, "unknown keys"),
        ({"flags": {"logdir": "x"}}, "do not set it"),
    ],
)
def test_bad_sweeps_are_refused_with_the_key_named(change, message):
    with pytest.raises(SweepError, match=message):
        expand({**SPEC, **change})


def test_missing_flagfile_is_named(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**SPEC, "flagfiles": ["configs/nope.cfg"]}))
    with pytest.raises(SweepError, match="missing flagfile configs/nope.cfg"):
        load_sweep(str(path))


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "configs/sweeps/*.yaml"))))
def test_shipped_sweeps_expand_with_existing_flagfiles(path, monkeypatch):
    monkeypatch.chdir(ROOT)
    name, runs = load_sweep(os.path.relpath(path, ROOT))
    assert runs and name == os.path.splitext(os.path.basename(path))[0]
    assert len({r.logdir for r in runs}) == len(runs)  # one directory per run
    assert all(r.steps == 1_000_000 for r in runs)


def test_run_state_from_checkpoints(tmp_path):
    run = Run("r", str(tmp_path / "r"), (), steps=40)
    assert run_state(run) == "new"
    os.makedirs(tmp_path / "r" / "checkpoints" / "20")
    assert run_state(run) == "partial"
    os.makedirs(tmp_path / "r" / "checkpoints" / "40")
    assert run_state(run) == "complete"


def _tiny_sweep(tmp_path):
    """2 tasks x 2 methods (dense, sparse env reward) x 1 seed of real training runs, small
    enough for CI: tiny agent, 40 env steps of 20-step episodes, no goal."""
    spec = {
        "name": "tiny",
        "logdir": str(tmp_path / "tiny"),
        "flagfiles": ["configs/quickstart.cfg"],
        "flags": {
            "preset": "tiny",
            "steps": 40,
            "time_limit": 20,
            "eval_every": 40,
            "eval_episodes": 1,
            "checkpoint_every": 40,
            "log_every": 20,
            "goal_file": "",
            "video": False,
        },
        "axes": {
            "task": {"reach": {"flags": {"task": "reach"}}, "push": {"flags": {"task": "push"}}},
            "method": {"dense": {}, "sparse": {"flags": {"reward_mode": "sparse"}}},
            "seed": [0],
        },
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return str(path)


@pytest.mark.slow
def test_tiny_sweep_through_submitit_then_local_then_report(tmp_path):
    """The SLURM path (one job array, a run per task) through submitit's local executor for the
    reach runs; the local executor then launches only the rest; a third launch has nothing left
    to do; the report covers both tasks and methods."""
    path = _tiny_sweep(tmp_path)
    first = run_module(
        "genreward_jax.sweep",
        path,
        "--executor=submitit_local",
        "--only=reach",
        "--wait",
        "--timeout_min=15",
    )
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout.count("submitted reach/") == 2
    _, runs = load_sweep(path)
    assert {r.name: run_state(r) for r in runs if r.name.startswith("reach")} == {
        f"reach/{m}/seed_0": "complete" for m in ("dense", "sparse")
    }

    second = run_module("genreward_jax.sweep", path, "--jobs=2")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "4 runs, 2 to launch (2 complete" in second.stdout
    assert second.stdout.count("started push/") == 2 and "started reach/" not in second.stdout
    assert all(run_state(r) == "complete" for r in runs)
    third = run_module("genreward_jax.sweep", path)
    assert third.returncode == 0 and "4 runs, 0 to launch (4 complete" in third.stdout

    made = run_module("genreward_jax.report", path, "--reps=200")
    assert made.returncode == 0, made.stderr[-3000:]
    report_dir = tmp_path / "tiny" / "report"
    for name in ("curves.png", "final.md", "final.csv", "iqm.md"):
        assert (report_dir / name).stat().st_size > 100
    final = (report_dir / "final.md").read_text()
    for task in ("reach", "push"):
        for method in ("dense", "sparse"):
            assert f"| {task} | {method} | 1 | 40 |" in final
