"""FB inside DreamerV3's jitted train step: its own Adam, soft targets, freezing, reward bonus."""

import jax
import numpy as np
import pytest

from genreward_jax.dreamer import Agent, preset
from genreward_jax.envs import ACT_DIM
from genreward_jax.rewards import fb
from genreward_jax.rewards.fb_extra_loss import FBExtraLoss, FBRewardSpec, goal_closeness_corr

from .conftest import FB_GOAL_DIM, make_fb_batch

SPEC = {"state": ((39,), np.float32)}


@pytest.fixture(scope="module")
def setup():
    config = preset("tiny")
    extra = FBExtraLoss(
        fb.FBConfig(z_dim=8, hidden=16),
        FBRewardSpec(
            state_dim=config.feat_size,
            action_dim=ACT_DIM,
            goal_feature=np.ones(FB_GOAL_DIM, np.float32),
            beta=0.5,
            freeze_after_updates=2,
            target="reward_head",
        ),
    )
    agent = Agent(config, SPEC, ACT_DIM, extra=extra)
    return agent, make_fb_batch(config)


def leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_fb_trains_then_freezes(setup):
    agent, batch = setup
    state = agent.init(jax.random.key(0))
    snapshots = [(leaves(state.extra_params), leaves(state.extra_state["target"]))]
    bonuses = []
    for i in range(4):
        state, metrics, _ = agent.train(state, batch, jax.random.key(i))
        snapshots.append((leaves(state.extra_params), leaves(state.extra_state["target"])))
        bonuses.append(float(metrics["reward_bonus"]))
        assert np.isfinite(float(metrics["loss/extra"]))
    changed = [
        any(not np.array_equal(a, b) for a, b in zip(before[0], after[0], strict=True))
        for before, after in zip(snapshots, snapshots[1:], strict=False)
    ]
    assert changed == [True, True, False, False]
    target_changed = [
        any(not np.array_equal(a, b) for a, b in zip(before[1], after[1], strict=True))
        for before, after in zip(snapshots, snapshots[1:], strict=False)
    ]
    assert target_changed == [True, True, False, False]
    assert int(state.extra_state["updates"]) == 4
    assert all(np.isfinite(bonuses))
    # B's input statistics follow the replay features while FB trains, then are held with it.
    norm = state.extra_state["goal_norm"]
    assert float(norm["count"]) == 2.0
    features = np.asarray(batch["dino"][:, 2:]).reshape(-1, FB_GOAL_DIM)
    assert np.abs(np.asarray(norm["mean"])).max() < 3 * np.abs(features.mean(0)).max() + 0.5
    assert not np.allclose(np.asarray(norm["var"]), 1.0)


def test_fb_uses_its_own_adam_step(setup):
    """The first Adam step moves every FB weight by ~lr (1e-4), not by DreamerV3's LaProp lr."""
    agent, batch = setup
    state = agent.init(jax.random.key(0))
    before = leaves(state.extra_params)
    state, _, _ = agent.train(state, batch, jax.random.key(0))
    steps = np.concatenate(
        [np.abs(a - b).ravel() for a, b in zip(leaves(state.extra_params), before, strict=True)]
    )
    moved = steps[steps > 0]
    assert moved.size > 0.5 * steps.size
    np.testing.assert_allclose(np.median(moved), 1e-4, rtol=0.05)


def test_goal_closeness_corr_signs_and_mask():
    """+1 when Q falls with the distance to the goal, −1 when it grows, masked rows ignored."""
    rng = np.random.default_rng(0)
    nxt = rng.normal(size=(64, 5)).astype(np.float32)
    goal = np.tile(rng.normal(size=(1, 5)).astype(np.float32), (64, 1))
    distance = np.linalg.norm(nxt - goal, axis=-1)
    mask = np.ones(64, np.float32)
    assert float(goal_closeness_corr(-distance, nxt, goal, mask)) == pytest.approx(1.0, abs=1e-5)
    assert float(goal_closeness_corr(distance, nxt, goal, mask)) == pytest.approx(-1.0, abs=1e-5)
    garbage = np.where(np.arange(64) < 32, -distance, 1e3 * rng.normal(size=64))
    mask[32:] = 0.0
    assert float(goal_closeness_corr(garbage, nxt, goal, mask)) == pytest.approx(1.0, abs=1e-5)


def test_goal_signal_is_logged(setup):
    agent, batch = setup
    _, metrics, _ = agent.train(agent.init(jax.random.key(0)), batch, jax.random.key(0))
    corr = float(metrics["extra/fb_q_goal_corr"])
    assert -1.0 <= corr <= 1.0
