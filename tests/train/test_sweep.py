"""Sweeps: grid expansion, the shipped sweep files, skip/resume, local and submitit runs."""

import glob
import os
import subprocess
import sys

import pytest
import yaml

from genreward_jax.sweep import Run, SweepError, expand, launch_local, load_sweep, run_state

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SPEC = {
    "name": "demo", "logdir": "runs/demo", "flagfiles": ["configs/quickstart.cfg"],
    "flags": {"steps": 100, "video": False},
    "axes": {
        "method": {"genreward": {}, "dreamerv3": {"flagfiles": ["configs/baseline_dreamerv3.cfg"],
                                                  "flags": {"lr": 1e-3}}},
        "seed": [0, 1],
    },
}


def test_expansion_is_the_grid_in_axis_order():
    name, runs = expand(SPEC)
    assert name == "demo"
    assert [r.name for r in runs] == ["genreward/seed_0", "genreward/seed_1",
                                      "dreamerv3/seed_0", "dreamerv3/seed_1"]
    run = runs[2]
    assert run.logdir == os.path.join("runs/demo", "dreamerv3", "seed_0")
    assert run.args == ("--flagfile=configs/quickstart.cfg",
                        "--flagfile=configs/baseline_dreamerv3.cfg", "--steps=100",
                        "--novideo", "--lr=0.001", "--seed=0",
                        f"--logdir={run.logdir}")
    assert run.steps == 100
    assert run.command("py")[:3] == ["py", "-m", "genreward_jax.main"]


@pytest.mark.parametrize("change, message", [
    ({"colour": 1}, "unknown top-level keys"),
    ({"axes": {}}, "non-empty mapping"),
    ({"axes": {"seed": 3}}, "mapping of named values or a list"),
    ({"axes": {"seed": []}}, "at least one value"),
    ({"axes": {"m": {"a b": {}}}}, "letters, digits"),
    ({"axes": {"m": {"a": {"flag": {}}}}}, "unknown keys"),
    ({"flags": {"logdir": "x"}}, "do not set it"),
])
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


def _tiny_sweep(tmp_path, name):
    """Two real training runs small enough for CI (tiny agent, 40 env steps, no goal)."""
    spec = {"name": name, "logdir": str(tmp_path / name),
            "flagfiles": ["configs/quickstart.cfg"],
            "flags": {"preset": "tiny", "steps": 40, "time_limit": 20, "eval_every": 40,
                      "eval_episodes": 1, "checkpoint_every": 40, "log_every": 20,
                      "goal_file": "", "video": False},
            "axes": {"seed": [0, 1]}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def _sweep_cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "genreward_jax.sweep", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_local_executor_runs_then_skips_complete_runs(tmp_path, monkeypatch):
    path = _tiny_sweep(tmp_path, "local")
    monkeypatch.chdir(ROOT)
    _, runs = load_sweep(path)
    codes = launch_local(runs, jobs=2, poll_s=0.5)
    assert codes == {"seed_0": 0, "seed_1": 0}
    assert all(run_state(r) == "complete" for r in runs)
    again = _sweep_cli(path)
    assert again.returncode == 0 and "2 runs, 0 to launch (2 complete" in again.stdout


@pytest.mark.slow
def test_submitit_local_executor_runs_the_array(tmp_path):
    """The SLURM path (one job array, one run a task) through submitit's local executor."""
    path = _tiny_sweep(tmp_path, "submitit")
    result = _sweep_cli(path, "--executor=submitit_local", "--only=seed_1", "--wait",
                        "--timeout_min=10")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "submitted seed_1" in result.stdout
    _, runs = load_sweep(path)
    states = {r.name: run_state(r) for r in runs}
    assert states == {"seed_0": "new", "seed_1": "complete"}
