"""The reward-quality benchmark's pieces: rank statistics against closed forms, video targets of
each variant, and an FB term that must find the goal on a synthetic reaching task."""

import jax.numpy as jnp
import numpy as np
import pytest

from genreward_jax.rewards import fb, quality
from genreward_jax.rewards.quality_terms import FBTerm
from genreward_jax.rewards.video import VideoReward, segment_indices, video_targets


def test_ranks_spearman_and_auc_closed_forms():
    np.testing.assert_array_equal(quality.ranks(np.array([10, 30, 20, 20])), [1, 4, 2.5, 2.5])
    x = np.arange(10.0)
    assert quality.spearman(x, x**3) == pytest.approx(1.0)
    assert quality.spearman(x, -np.exp(x)) == pytest.approx(-1.0)
    assert np.isnan(quality.spearman(x, np.ones(10)))
    assert quality.auc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert quality.auc(np.array([1.0]), np.array([1.0])) == 0.5
    # 3 of the 4 (positive, negative) pairs are ordered
    assert quality.auc(np.array([1.0, 3.0]), np.array([2.0, 0.0])) == 0.75


def mean_pixel_encoder(clips):
    """A stand-in 'VAE' [M, K, R, R, 3] -> [M, K, 1, 1, 3]: the mean colour of each frame."""
    return clips.astype(jnp.float32).mean((2, 3), keepdims=True)


def test_progress_targets_follow_the_episode_fraction_and_centring_subtracts_the_start():
    goal_frames = (np.arange(9)[:, None, None, None] * np.ones((9, 2, 2, 3))).astype(np.uint8)
    latent = np.asarray(mean_pixel_encoder(jnp.asarray(goal_frames[None, ::2])))[0]
    paper = video_targets(mean_pixel_encoder, goal_frames, latent, "paper", 4, 8, 5)
    assert paper.shape == (2, 5, 1, 1, 3) and np.all(paper == latent)
    progress = video_targets(mean_pixel_encoder, goal_frames, latent, "progress", 4, 8, 5)
    np.testing.assert_array_equal(segment_indices(9, 5, 0.0, 0.5), [0, 1, 2, 3, 4])
    np.testing.assert_allclose(progress[0, :, 0, 0, 0], [0, 1, 2, 3, 4])
    np.testing.assert_allclose(progress[1, :, 0, 0, 0], [4, 5, 6, 7, 8])
    centred = video_targets(mean_pixel_encoder, goal_frames, latent, "progress_centred", 4, 8, 5)
    np.testing.assert_allclose(centred, progress - 0.0)  # goal frame 0 is black
    paced = video_targets(
        mean_pixel_encoder, goal_frames, latent, "progress", 4, 8, 5, goal_steps=4
    )
    np.testing.assert_allclose(paced[1, :, 0, 0, 0], 8.0)  # past the goal's end: its last frame


def test_centred_reward_compares_changes_not_scenes():
    """Two clips that move alike from different start scenes score 1 once centred, while the
    uncentred cosine is dominated by the shared offset."""
    ramp = np.arange(5, dtype=np.float32)[:, None, None, None] * np.ones((5, 2, 2, 3))
    goal = (100 + 10 * ramp).astype(np.uint8)
    agent = (50 + 10 * ramp).astype(np.uint8)
    still = np.asarray(mean_pixel_encoder(jnp.repeat(jnp.asarray(goal[:1])[None], 5, 1)))[0]
    target = np.asarray(mean_pixel_encoder(jnp.asarray(goal[None])))[0] - still
    centred = VideoReward(mean_pixel_encoder, target[None], centred=True)
    score = float(centred(agent[None], np.zeros(1, np.int32), agent[:1])[0])
    assert score == pytest.approx(1.0, abs=1e-5)
    reversed_motion = agent[::-1].copy()
    backwards = float(centred(reversed_motion[None], np.zeros(1, np.int32), reversed_motion[:1])[0])
    assert backwards == pytest.approx(-1.0, abs=1e-5)
    with pytest.raises(ValueError, match="first frame"):
        centred(agent[None], np.zeros(1, np.int32))


def reaching_rollouts(n_per_level=6, length=24, seed=0):
    """A point on a line (state[0] = x, rest of the 39-d state zero) that the 'expert' pushes
    from 0 towards the goal x = 1 and 'random' shoves either way; env reward = -|x - 1|."""
    rng = np.random.default_rng(seed)
    rollouts = []
    for level in ("expert", "random"):
        for _ in range(n_per_level):
            x, states, actions, rewards = 0.0, [], [], []
            for _ in range(length):
                states.append(x)
                push = 1.0 if level == "expert" else rng.choice([-1.0, 1.0])
                action = np.clip(push + 0.3 * rng.normal(), -1, 1)
                x = float(np.clip(x + 0.08 * action, -1.0, 1.2))
                actions.append([action, 0.0, 0.0, 0.0])
                rewards.append(-abs(x - 1.0))
            states.append(x)
            s = np.zeros((length + 1, 39), np.float32)
            s[:, 0] = states
            rollouts.append(
                quality.Rollout(
                    level,
                    np.zeros((length + 1, 2, 2, 3), np.uint8),
                    s,
                    np.asarray(actions, np.float32),
                    np.asarray(rewards, np.float32),
                    x > 0.9,
                )
            )
    return rollouts


def test_fb_term_in_state_space_finds_the_goal_on_a_reaching_task():
    rollouts = reaching_rollouts()
    goal = np.zeros(39, np.float32)
    goal[0] = 1.0
    term = FBTerm(
        "state",
        goal,
        fb.FBConfig(z_dim=8, hidden=64, discount=0.9),
        steps=800,
        batch_size=256,
        lr=1e-3,
    )
    rows = quality.evaluate_terms([term], rollouts, ["expert", "random"])
    assert term.losses[-100:].mean() < term.losses[:100].mean()
    env, fb_row = rows
    assert env["auc_expert_vs_random"] == 1.0
    assert fb_row["auc_expert_vs_random"] > 0.9, fb_row
    assert fb_row["spearman_return"] > 0.5, fb_row
    table = quality.format_table(rows, ["expert", "random"])
    assert "fb/state" in table and "AUC" in table


def test_collect_rollouts_starts_every_episode_at_the_placement(tiny_goal):
    _, goal = tiny_goal
    rollouts = quality.collect_rollouts(
        goal.task, goal.placement, [0.5], episodes=1, time_limit=24, size=32, progress=False
    )
    assert [r.level for r in rollouts] == ["expert", "expert+0.5", "random"]
    for rollout in rollouts:
        np.testing.assert_allclose(rollout.states[0], goal.states[0], atol=1e-5)
        assert rollout.frames.shape == (25, 32, 32, 3) and rollout.actions.shape == (24, 4)
    assert rollouts[0].env_return > rollouts[-1].env_return
