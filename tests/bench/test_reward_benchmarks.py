"""The reward benchmarks' command lines: the GPU check's input checks and plan, the learning
benchmark's plan, one real (tiny) arm run, and its summary of seeds."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from bench import learn_rewards  # noqa: E402


def gpu_check(*args):
    return subprocess.run(
        ["bash", "bench/gpu_paper_check.sh", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHON": sys.executable},
    )


def test_gpu_check_dry_run_prints_the_plan_on_cpu():
    result = gpu_check("--dry-run", "--models=tiny", "--steps=2000", "--out=/tmp/x")
    assert result.returncode == 0, result.stderr
    for step in (
        "make_goals.py",
        "bench.reward_quality",
        "genreward_jax.main",
        "baseline_dreamerv3.cfg",
        "--steps=2000",
    ):
        assert step in result.stdout


def test_gpu_check_names_a_missing_model_in_one_line(tmp_path):
    result = gpu_check("--dry-run", f"--video_model={tmp_path}/none", "--dinov3=x/y")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--video_model" in lines[0], result.stderr
    result = gpu_check(
        "--dry-run",
        f"--video_model={tmp_path}",
        f"--dinov3={tmp_path}",
        f"--clip_pretrained={tmp_path}/clip.bin",
    )
    assert result.returncode == 2 and "--clip_pretrained" in result.stderr
    assert gpu_check("--steps=0").returncode == 2


def test_learn_rewards_plan_has_every_arm_and_seed(tmp_path):
    plan = learn_rewards.main(["--dry_run", f"--out_dir={tmp_path}"])["plan"]
    assert len(plan) == len(learn_rewards.ARMS) * 2
    assert {arm for arm, _ in plan} == set(learn_rewards.ARMS)
    with pytest.raises(SystemExit):
        learn_rewards.parse_args(["--arms=dense,magic"])


def test_summary_gives_mean_and_range_over_seeds(tmp_path):
    records = [
        {
            "arm": "fb_state",
            "seed": s,
            "curve": [
                {"env_steps": 10, "return": 1.0 + s, "success": 0.0},
                {"env_steps": 20, "return": 3.0 + s, "success": float(s)},
            ],
            "train_episodes": [
                {"env_steps": t, "success": v}
                for t, v in zip((5, 10, 15, 20), (1.0, 1.0, 0.0, 0.5 * s), strict=True)
            ],
            "fb_training": [
                {"env_steps": t, "train/extra/fb_q_goal_corr": 0.1 * t + s} for t in range(1, 8)
            ],
            "closest_approach": [
                {"episode": i, "env_steps": 10 * i, "distance": 0.3 - 0.01 * i * (1 + s)}
                for i in range(16)
            ],
        }
        for s in (0, 1)
    ]
    summary = learn_rewards.summarise(records, ["fb_state", "none"], steps=20)
    assert list(summary) == ["fb_state"]
    s = summary["fb_state"]
    assert s["env_steps"] == [10, 20] and s["return"]["mean"] == [1.5, 3.5]
    assert s["return"]["min"] == [1.0, 3.0] and s["success"]["max"] == [0.0, 1.0]
    # Second half = log points after env step 10: (0, 0) for seed 0, (0, 0.5) for seed 1.
    assert s["train_success_second_half"] == [0.0, 0.25]
    np.testing.assert_allclose(s["fb_q_goal_corr_final"], [0.5, 1.5])  # mean of t = 3..7
    # Last quarter = episodes 12..15: 0.3 - 0.01 * 13.5 * (1 + s).
    np.testing.assert_allclose(s["closest_last_quarter"], [0.165, 0.03], atol=1e-9)
    assert len(s["closest"]["mean"]) == 16 - 8 + 1  # 8-episode running mean
    table = learn_rewards.markdown(summary)
    assert (
        "| fb_state | 2 | 4 [3, 4] | 0.50 | 0.12 [0.00, 0.25] | 0.098 [0.030, 0.165] | "
        "1.00 [0.50, 1.50] |"
    ) in table
    learn_rewards.plot(summary, str(tmp_path / "curves.png"), "title")
    assert (tmp_path / "curves.png").stat().st_size > 10_000


@pytest.mark.slow
def test_one_arm_trains_end_to_end(tmp_path, tiny_reach_goal):
    """The sparse + state-space FB arm with a tiny agent: FB trains in the loop, eval runs."""
    args = learn_rewards.parse_args(
        [
            "--arms=sparse+fb_state",
            "--seeds=0",
            "--steps=96",
            "--prefill=32",
            "--preset=tiny",
            "--eval_every=48",
            "--eval_episodes=1",
            "--time_limit=16",
            "--batch_length=8",
            "--batch_size=2",
            f"--out_dir={tmp_path}",
        ]
    )
    out = str(tmp_path / "run.json")
    record = learn_rewards.run_arm(args, "sparse+fb_state", 0, tiny_reach_goal, out)
    assert json.load(open(out))["arm"] == "sparse+fb_state"
    assert [p["env_steps"] for p in record["curve"]] == [48, 96]
    assert record["updates"] > 0 and record["fb_training"]
    assert len(record["closest_approach"]) >= 96 // 17  # episodes of 16 steps + the reset step
    assert all(0 < p["distance"] < 2 for p in record["closest_approach"])
    assert all(np.isfinite(p["return"]) for p in record["curve"])


@pytest.fixture(scope="module")
def tiny_reach_goal(tmp_path_factory):
    from preprocessing.goal_builder import GoalConfig, build_goal
    from preprocessing.models import ModelSpec

    out = tmp_path_factory.mktemp("reach_goal")
    return build_goal(
        GoalConfig(
            task="reach-v3",
            goal_source="scripted",
            out_dir=str(out),
            models=ModelSpec(mode="tiny"),
            resolution=64,
            num_sampled_frames=17,
            seed=0,
            max_steps=64,
        )
    )["goal"]


@pytest.mark.slow
def test_reward_quality_scores_every_plugin_through_the_interface(tmp_path):
    """The quality benchmark, tiny and short, from a fresh tiny goal: GenReward's rows and
    the baselines' come from their plug-ins, each with finite rank statistics."""
    from bench import reward_quality
    from preprocessing.goal_builder import GoalConfig, build_goal
    from preprocessing.models import ModelSpec

    goal = build_goal(
        GoalConfig(
            task="reach-v3",
            goal_source="scripted",
            out_dir=str(tmp_path),
            models=ModelSpec(mode="tiny", tiny_dir=str(tmp_path / "m")),
            resolution=64,
            num_sampled_frames=9,
            max_steps=32,
        )
    )["goal"]
    result = reward_quality.main(
        [
            f"--goal_file={goal}",
            "--episodes=2",
            "--noise=1.0",
            "--time_limit=32",
            "--interval=16",
            "--variants=paper",
            "--fb_steps=20",
            f"--out={tmp_path / 'q.json'}",
        ]
    )
    names = [row["term"] for row in result["rows"]]
    assert names[0] == "env return (reference)" and "video/paper" in names
    baselines = {"vlmrm λ=0.5", "vlmrm λ=0 (CLIP cosine)", "roboclip", "tadpole"}
    assert {"fb/dino", "fb/state", *baselines} <= set(names)
    assert all(np.isfinite(row["auc_expert_vs_random"]) for row in result["rows"])
    only = reward_quality.main(
        [
            f"--goal_file={goal}",
            "--episodes=1",
            "--noise=1.0",
            "--time_limit=32",
            "--reward_models=vlmrm",
            f"--out={tmp_path / 'v.json'}",
        ]
    )
    assert [row["term"] for row in only["rows"]][1:] == ["vlmrm λ=0.5", "vlmrm λ=0 (CLIP cosine)"]
    with pytest.raises(SystemExit):
        reward_quality.parse_args([f"--goal_file={goal}", "--reward_models=none"])
