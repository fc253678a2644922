"""Start-up checks of a goal file and the per-step reward entries written to replay."""

import dataclasses
import shutil

import numpy as np
import pytest

from genreward_jax.goals import GoalFileError, save_goal
from genreward_jax.rewards.goal_rewards import GoalMismatchError, GoalRewards, RewardConfig


def copy_goal(tmp_path, goal_path, goal, **changes):
    """The goal folder copied (encoders included) with some GoalFile fields replaced."""
    folder = tmp_path / "goal_copy"
    shutil.copytree(goal_path.rsplit("/", 1)[0], folder)
    path = str(folder / "goal.npz")
    save_goal(path, dataclasses.replace(goal, **changes))
    return path


@pytest.fixture(scope="module")
def rewards(tiny_goal):
    return GoalRewards(
        RewardConfig(goal_file=tiny_goal[0], video_interval=16), num_envs=2, image_size=64
    )


def test_goal_is_accepted_and_goal_feature_is_computed(rewards, tiny_goal):
    _, goal = tiny_goal
    assert goal.resolution == 64 and rewards.extra_size is None  # policy frames are encoded
    assert rewards.goal_feature.shape == goal.keyframe_feature.shape
    # the keyframe is already 64x64, so the FB goal feature is the stored feature
    np.testing.assert_allclose(rewards.goal_feature, goal.keyframe_feature, atol=1e-3)


def test_tampered_latent_is_refused(tmp_path, tiny_goal):
    goal_path, goal = tiny_goal
    path = copy_goal(tmp_path, goal_path, goal, latent_mean=goal.latent_mean + 0.1)
    with pytest.raises(GoalMismatchError, match="VAE latent"):
        GoalRewards(RewardConfig(goal_file=path), num_envs=1, image_size=64)


def test_other_encoder_weights_are_refused(tmp_path, tiny_goal):
    goal_path, goal = tiny_goal
    provenance = {**goal.provenance, "dinov3": {**goal.provenance["dinov3"], "hash": "0" * 64}}
    path = copy_goal(tmp_path, goal_path, goal, provenance=provenance)
    with pytest.raises(GoalFileError, match="dinov3 weights hash"):
        GoalRewards(RewardConfig(goal_file=path), num_envs=1, image_size=64)


def test_missing_goal_file_and_bad_flags():
    with pytest.raises(FileNotFoundError, match="make_goals"):
        RewardConfig(goal_file="/nonexistent/goal.npz")
    with pytest.raises(ValueError, match="video_interval"):
        RewardConfig(goal_file=__file__, video_interval=0)


def test_rewards_land_on_window_ends_and_combine(rewards, tiny_goal):
    _, goal = tiny_goal
    assert not rewards.render_mask().any()
    rng = np.random.default_rng(0)
    rewards.episode_step[:] = 0
    r_video_at, totals = [], []
    for step in range(34):
        obs = {
            "image": rng.integers(0, 255, (2, 64, 64, 3), np.uint8),
            "reward": np.full(2, 0.5, np.float32),
            "is_first": np.array([step == 0, step == 0]),
        }
        out = rewards.process(obs)
        assert out["dino"].shape == (2, goal.keyframe_feature.shape[0])
        if out["r_video"].any():
            r_video_at.append(step)
        totals.append((out["reward"], out["r_env"], out["r_video"]))
    assert r_video_at == [16, 32]
    for reward, r_env, r_video in totals:
        np.testing.assert_allclose(reward, r_env + 0.01 * r_video, rtol=1e-6)
    assert np.all(np.abs(totals[16][2]) <= 1.0) and np.all(totals[16][2] != 0)
