"""The FB reward where DreamerV3 scores actions: alignment of (s_t, a_t) with step t+1, and an
actor that follows the action F prefers when no other reward exists."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genreward_jax.dreamer import Agent, preset
from genreward_jax.dreamer import actor_critic as ac
from genreward_jax.dreamer import distributions as dists
from genreward_jax.dreamer import world_model as wm
from genreward_jax.dreamer.rssm import features
from genreward_jax.envs import ACT_DIM
from genreward_jax.rewards import fb
from genreward_jax.rewards.fb_extra_loss import FBExtraLoss, FBRewardSpec

from .conftest import FB_GOAL_DIM, make_fb_batch

SPEC = {"state": ((39,), np.float32)}
FB_CONFIG = fb.FBConfig(z_dim=8, hidden=32)


def test_shift_to_arrival():
    reward = jnp.array([[1.0, 2.0, 3.0, 4.0]])
    np.testing.assert_array_equal(ac.shift_to_arrival(reward), [[0.0, 1.0, 2.0, 3.0]])
    valid = jnp.array([[True, True, False, True]])
    np.testing.assert_array_equal(ac.shift_to_arrival(reward, valid), [[0.0, 1.0, 0.0, 3.0]])


def fit_action_preferring_f(extra, sign: float, feat_dim: int):
    """FB parameters whose Q(s, a) = F(s, a, z_g)ᵀ z_g ≈ sign · 3 · a[0] for any s (fitted)."""
    params, state = extra.init(jax.random.key(0))
    z_goal = fb.goal_z(params, extra.config, jnp.ones(FB_GOAL_DIM))
    optimizer = optax.adam(3e-3)

    def loss(f_params, key):
        k_s, k_a = jax.random.split(key)
        s = jax.random.normal(k_s, (256, feat_dim))
        a = jax.random.uniform(k_a, (256, ACT_DIM), minval=-1.5, maxval=1.5)
        q = fb.fb_reward({**params, "F": f_params}, extra.config, s, a, z_goal)
        return jnp.mean(jnp.square(q - sign * 3.0 * a[:, 0]))

    @jax.jit
    def fit(f_params):
        def step(carry, key):
            f_params, opt_state = carry
            value, grads = jax.value_and_grad(loss)(f_params, key)
            updates, opt_state = optimizer.update(grads, opt_state, f_params)
            return (optax.apply_updates(f_params, updates), opt_state), value

        (f_params, _), values = jax.lax.scan(
            step, (f_params, optimizer.init(f_params)), jax.random.split(jax.random.key(1), 1500)
        )
        return f_params, values

    f_params, values = fit(params["F"])
    assert float(values[-100:].mean()) < 0.1 * float(values[:100].mean())
    return {**params, "F": f_params}, state


@pytest.fixture(scope="module")
def agent_and_batch():
    config = preset("tiny")
    spec = FBRewardSpec(
        state_dim=config.feat_size,
        action_dim=ACT_DIM,
        goal_feature=np.ones(FB_GOAL_DIM, np.float32),
        beta=1.0,
        freeze_after_updates=0,
        env_reward=False,
    )
    extra = FBExtraLoss(FB_CONFIG, spec)
    return Agent(config, SPEC, ACT_DIM, extra=extra), make_fb_batch(config, batch=4, length=8)


def observed_features(agent, state, batch, key):
    """The posterior features agent.loss computes for this batch and key."""
    obs_key, _, imag_key = jax.random.split(key, 3)
    data = {k: v[:, 1:] for k, v in batch.items() if k not in ("deter", "stoch")}
    start = {k: batch[k][:, 0] for k in ("deter", "stoch")}
    observed = wm.observe(
        agent.nets(state.params),
        {"state": data["state"]},
        batch["action"][:, :-1],
        data["is_first"],
        start,
        obs_key,
    )
    return observed, data, imag_key


def test_fb_reward_of_a_transition_lands_on_its_arrival_step(agent_and_batch):
    agent, batch = agent_and_batch
    extra = agent.extra
    state = agent.init(jax.random.key(0))
    observed, data, imag_key = observed_features(agent, state, batch, jax.random.key(3))
    b, t = data["is_first"].shape
    starts = jax.tree.map(lambda x: x.reshape((b * t, *x.shape[2:])), observed.states)
    img_states, img_act, _ = ac.imagine(agent.nets(state.params), agent.config, starts, imag_key)
    img_feat = jnp.swapaxes(features(img_states), 0, 1)  # time-major -> [N, H+1, F]
    img_act = jnp.swapaxes(img_act, 0, 1)
    replay, imagined = agent.transition_rewards(
        state.extra_params, state.extra_state, observed.feat, data, img_feat, img_act
    )

    def q(feat, action):
        reward, _ = extra.transition_reward(
            state.extra_params,
            state.extra_state,
            feat,
            action,
            jnp.zeros(feat.shape[:-1], jnp.int32),
        )
        return np.asarray(reward)

    by_hand = q(observed.feat, data["action"])  # reward of (s_t, a_t) [B, T]
    replay = np.asarray(replay)
    np.testing.assert_allclose(replay[:, 0], 0.0)
    new_episode = np.asarray(data["is_first"])[:, 1:]
    np.testing.assert_allclose(
        replay[:, 1:], np.where(new_episode, 0.0, by_hand[:, :-1]), rtol=1e-5, atol=1e-6
    )
    assert new_episode.any() and np.abs(by_hand[:, :-1][new_episode]).min() > 0
    imagined = np.asarray(imagined)
    np.testing.assert_allclose(imagined[:, 0], 0.0)
    np.testing.assert_allclose(imagined[:, 1:], q(img_feat, img_act)[:, :-1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_actor_objective_favours_the_action_f_prefers(agent_and_batch, sign):
    """Env and video rewards off (all replay rewards zero), F frozen with Q ≈ sign·3·a[0]: the
    gradient of the agent's loss moves the policy mean of a[0] towards sign."""
    agent, batch = agent_and_batch
    state = agent.init(jax.random.key(0))
    extra_params, extra_state = fit_action_preferring_f(agent.extra, sign, agent.config.feat_size)
    state = state.replace(extra_params=extra_params, extra_state=extra_state)
    key = jax.random.key(5)
    observed, _, _ = observed_features(agent, state, batch, key)
    feat = jax.lax.stop_gradient(observed.feat)

    def loss(params):
        return agent.loss(params, extra_params, state, batch, key)[0]

    def mean_first_action(params):
        mean, _ = dists.bounded_normal(
            *agent.nets(params).pol(feat), agent.config.policy_minstd, agent.config.policy_maxstd
        )
        return mean[..., 0].mean()

    grads = jax.jit(jax.grad(loss))(state.params)
    direction = jax.jit(jax.grad(mean_first_action))(state.params)
    # A gradient-descent step of size lr changes the mean action by -lr·<grad, direction>.
    change = -sum(
        float(jnp.vdot(g, d))
        for g, d in zip(
            jax.tree.leaves(grads["pol"]), jax.tree.leaves(direction["pol"]), strict=True
        )
    )
    assert sign * change > 0, f"descent moves mean a[0] by {change:.3g} per unit lr"


def test_fb_on_the_decoded_observation():
    """state_input 'decoded': F reads the decoder's prediction of the 39-d state (symlog space)
    instead of the latent, in training, in imagination and at the policy step."""
    config = preset("tiny")
    extra = FBExtraLoss(
        FB_CONFIG,
        FBRewardSpec(
            state_dim=39,
            action_dim=ACT_DIM,
            goal_feature=np.ones(FB_GOAL_DIM, np.float32),
            beta=0.5,
            freeze_after_updates=10,
            state_input="decoded",
        ),
    )
    agent = Agent(config, SPEC, ACT_DIM, extra=extra)
    state = agent.init(jax.random.key(0))
    batch = make_fb_batch(config)
    state, metrics, _ = agent.train(state, batch, jax.random.key(1))
    assert np.isfinite(float(metrics["loss/extra"]))
    assert np.isfinite(float(metrics["extra_reward/imag"]))
    feat = jax.random.normal(jax.random.key(2), (5, config.feat_size))
    decoded = agent.extra_features(agent.nets(state.params), feat)
    nets = agent.nets(state.params)
    want = nets.dec(
        feat[:, : config.deter], feat[:, config.deter :].reshape((5, config.stoch, config.classes))
    )["state"]
    np.testing.assert_allclose(np.asarray(decoded), np.asarray(want), rtol=1e-6)
    carry = agent.initial_carry(2)
    reward = agent.step_transition_reward(
        state, carry, jnp.zeros((2, ACT_DIM)), jnp.zeros((2,), jnp.int32)
    )
    assert reward.shape == (2,)
    with pytest.raises(ValueError, match="vector observations"):
        Agent(config, {"image": ((64, 64, 3), np.uint8)}, ACT_DIM, extra=extra)
