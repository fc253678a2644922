"""The command line: --helpfull, clear flag errors, and one end-to-end quickstart-shaped run."""

import json
import os
import subprocess
import sys

import pytest

from genreward_jax.metrics_log import METRICS_FILE
from genreward_jax.run_flags import FLAGS_FILE
from tests.cli import run_module

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _main(*args, timeout=120, module="genreward_jax.main"):
    return run_module(module, *args, timeout=timeout)


def test_helpfull_lists_trainer_and_env_flags():
    result = _main("--helpfull")
    assert result.returncode in (0, 1), result.stderr  # absl exits 1 after printing help
    assert "Traceback" not in result.stderr
    for flag in (
        "--train_ratio",
        "--batch_length",
        "--checkpoint_every",
        "--preset",
        "--task",
        "--num_envs",
    ):
        assert flag in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--batch_size=0"], "--batch_size=0: 0 is not a positive integer"),
        (["--preset=3m"], "--preset=3m: value should be one of <1m|12m"),
        (
            ["--obs_keys=pixels", "--logdir=unused"],
            "--obs_keys ['pixels'] must be a non-empty subset",
        ),
        ([], "--logdir is required"),
        (["--bogus=1"], "Unknown command line flag 'bogus'"),
    ],
)
def test_bad_flags_fail_with_a_clear_message(args, message, tmp_path):
    result = _main(*args)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def quickstart_goal(tmp_path_factory):
    """README's goal command, shortened: the quickstart goal (with every baseline's section)."""
    out = tmp_path_factory.mktemp("goal")
    goal = subprocess.run(
        [
            sys.executable,
            "preprocessing/make_goals.py",
            "--flagfile=configs/goals_quickstart.cfg",
            f"--out_dir={out}",
            "--max_steps=40",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert goal.returncode == 0, goal.stderr[-3000:]
    return out / "goal.npz"


@pytest.mark.slow
def test_quickstart_flagfile_runs_end_to_end(tmp_path, quickstart_goal):
    """README's first command (goal, then training), shortened. The CLI glue and every run
    artifact; training itself (and its compile) is covered in-process by test_trainer.py, so this
    run stays in prefill: no train step is compiled."""
    logdir = tmp_path / "run"
    result = _main(
        "--flagfile=configs/quickstart.cfg",
        f"--logdir={logdir}",
        "--preset=tiny",
        "--steps=52",
        "--prefill=52",
        "--time_limit=25",
        "--eval_every=52",
        "--eval_episodes=1",
        "--checkpoint_every=26",
        "--log_every=26",
        f"--goal_file={quickstart_goal}",
        "--video_interval=24",
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "env steps/s" in result.stdout and "updates/s" in result.stdout
    flags_text = (logdir / FLAGS_FILE).read_text()
    assert "--task=reach" in flags_text and "--steps=52" in flags_text
    assert "--preset=tiny" in flags_text and "--obs_keys=state" in flags_text
    records = [json.loads(line) for line in (logdir / METRICS_FILE).read_text().splitlines()]
    assert [r["step"] for r in records if "perf/env_steps_per_s" in r] == [26, 52]
    timed = [r for r in records if "perf/env_steps_per_s" in r]
    for record in timed:  # where the loop's time went
        shares = {k: v for k, v in record.items() if k.startswith("perf/share_")}
        assert {"perf/share_act", "perf/share_env", "perf/share_reward"} <= set(shares)
        assert sum(shares.values()) == pytest.approx(1.0)
    # all 52 steps are prefill (no training); the checkpoint at 26 falls in the second line
    assert "perf/share_train" not in timed[-1] and timed[-1]["perf/seconds_checkpoint"] > 0
    assert any(r.get("rewards/video_windows", 0) > 0 for r in records)  # goal rewards ran
    evals = [r for r in records if "eval/return" in r]
    assert [r["step"] for r in evals] == [52] and evals[0]["eval/length"] == 25
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(logdir / "tb"))
    assert (logdir / "videos" / "eval_000000052.mp4").stat().st_size > 1000
    assert (logdir / "learning_curve.png").stat().st_size > 1000
    assert sorted(os.listdir(logdir / "checkpoints")) == ["26", "52"]

    # The evaluation CLI loads the final checkpoint (FB state included) without its replay and
    # reproduces the run's own final evaluation.
    final = _main(
        f"--logdir={logdir}",
        "--episodes=1",
        "--video",
        module="genreward_jax.evaluate",
        timeout=600,
    )
    assert final.returncode == 0, final.stderr[-3000:]
    report = json.loads((logdir / "evaluations" / "step_000000052.json").read_text())
    assert report["step"] == 52 and report["episodes"] == 1 and report["eval_mode"] == "mean"
    assert report["eval/return"] == evals[0]["eval/return"]
    assert report["eval/dense_return"] == evals[0]["eval/dense_return"]
    assert (logdir / "evaluations" / "step_000000052.mp4").stat().st_size > 1000
    missing = _main(f"--logdir={logdir}", "--step=7", module="genreward_jax.evaluate")
    assert missing.returncode == 1 and "no checkpoint at step 7" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_evaluate_refuses_a_directory_that_is_not_a_run(tmp_path):
    result = _main(f"--logdir={tmp_path}", module="genreward_jax.evaluate")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "flags.cfg not found" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "baseline, extra, banner, logged_key",
    [
        ("vlmrm", [], "VLM-RM: tiny-openclip at 64px", "rewards/vlmrm_std"),
        ("roboclip", ["--roboclip_render_size=64"], "RoboCLIP: tiny-s3d/seed0", "rewards/roboclip"),
        (
            "tadpole",
            ["--tadpole_render_size=64"],
            "TADPoLe: tiny-stable-diffusion/seed6",
            "rewards/tadpole_std",
        ),
    ],
)
def test_baseline_flagfile_trains_end_to_end(
    tmp_path, quickstart_goal, baseline, extra, banner, logged_key
):
    """A reward baseline from its flagfile on the quickstart task, tiny agent, a few dozen
    updates (two 20-step episodes, each log line covering one): its reward is logged next to
    the env reward's and the agent trains on it."""
    logdir = tmp_path / baseline
    result = _main(
        "--flagfile=configs/quickstart.cfg",
        f"--flagfile=configs/baseline_{baseline}.cfg",
        *extra,
        f"--logdir={logdir}",
        "--preset=tiny",
        "--steps=42",
        "--batch_size=2",
        "--batch_length=4",
        "--train_ratio=4",
        "--time_limit=20",
        "--eval_every=42",
        "--eval_episodes=1",
        "--checkpoint_every=42",
        "--log_every=21",
        "--novideo",
        f"--goal_file={quickstart_goal}",
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert banner in result.stdout
    assert f"--reward_model={baseline}" in (logdir / FLAGS_FILE).read_text()
    records = [json.loads(line) for line in (logdir / METRICS_FILE).read_text().splitlines()]
    logged = [r for r in records if logged_key in r]
    assert len(logged) == 2 and all(r[logged_key] != 0 for r in logged)
    assert any(r.get("train/loss/rew", 0) > 0 for r in records)  # the reward head trained
    assert any(r.get("perf/share_train", 0) > 0 for r in records)  # and the clock saw it
    assert [r["step"] for r in records if "eval/return" in r] == [42]
