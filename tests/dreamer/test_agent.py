"""The agent end to end on tiny sizes: train step, policy, determinism, bfloat16, extras."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genreward_jax.dreamer import Agent, preset
from genreward_jax.dreamer import distributions as d
from genreward_jax.dreamer.rssm import features

from .conftest import ACT_DIM, IMAGE_SPEC, VECTOR_SPEC, make_batch


def test_param_and_state_dtypes(vector_agent):
    state = vector_agent.init(jax.random.key(0))
    assert set(state.params) == {"enc", "dyn", "dec", "rew", "con", "pol", "val"}
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state.params))
    assert jax.tree.structure(state.slow_value) == jax.tree.structure(state.params["val"])
    assert int(state.step) == 0


def test_reward_and_value_predictions_exactly_zero_at_init(vector_agent, tiny_config):
    state = vector_agent.init(jax.random.key(0))
    nets = vector_agent.nets(state.params)
    feat = jax.random.normal(jax.random.key(1), (5, tiny_config.feat_size))
    bins = jnp.asarray(vector_agent.bins)
    assert float(jnp.abs(d.twohot_mean(nets.rew(feat), bins)).max()) == 0.0
    assert float(jnp.abs(d.twohot_mean(nets.val(feat), bins)).max()) == 0.0


def test_train_steps_reduce_world_model_loss(trained):
    _, state, history, _ = trained

    def wm(m):
        return m["loss/rec_state"] + m["loss/rew"] + m["loss/con"]

    assert wm(history[-1]) < wm(history[0])
    assert int(state.step) == 3
    assert all(np.isfinite(v).all() for m in history for v in m.values())


def test_train_updates_everything_and_slow_critic(trained):
    params0, state, _, _ = trained
    for name in ("enc", "dyn", "dec", "rew", "con", "pol", "val"):
        moved = jax.tree.map(
            lambda a, b: float(np.abs(np.asarray(a) - b).max()), state.params[name], params0[name]
        )
        assert max(jax.tree.leaves(moved)) > 0, name
    # Slow critic: EMA towards the critic, so strictly between old and new weights.
    old = params0["val"]["out"]["kernel"]
    new = np.asarray(state.params["val"]["out"]["kernel"])
    slow = np.asarray(state.slow_value["out"]["kernel"])
    assert 0 < np.abs(slow - old).max() < np.abs(new - old).max()
    assert float(state.retnorm["hi"]) >= float(state.retnorm["lo"])


def test_context_shapes(trained, tiny_config, vector_batch):
    _, _, _, context = trained
    b, t1 = vector_batch["is_first"].shape
    assert context["deter"].shape == (b, t1 - 1, tiny_config.deter)
    assert context["stoch"].shape == (b, t1 - 1, tiny_config.stoch, tiny_config.classes)
    np.testing.assert_allclose(np.asarray(context["stoch"]).sum(-1), 1.0, rtol=1e-6)


def test_determinism_for_a_seed(vector_agent, vector_batch, trained):
    _, state_a, history, _ = trained
    state = vector_agent.init(jax.random.key(0))
    for _ in range(3):
        state, metrics, _ = vector_agent.train(state, vector_batch, jax.random.key(7))
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(state_a.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert float(metrics["loss/total"]) == float(history[-1]["loss/total"])


def test_policy_shapes_range_and_carry(vector_agent, trained):
    _, state, _, _ = trained
    n = 5
    carry = vector_agent.initial_carry(n)
    rng = np.random.default_rng(0)
    obs = {
        "state": jnp.asarray(rng.normal(size=(n, 39)) * 10, jnp.float32),
        "is_first": jnp.ones((n,), bool),
    }
    action, carry = vector_agent.policy(state, carry, obs, jax.random.key(0), mode="train")
    assert action.shape == (n, ACT_DIM) and action.dtype == jnp.float32
    assert float(jnp.abs(action).max()) <= 1.0
    assert carry["deter"].shape == (n, vector_agent.config.deter)
    np.testing.assert_array_equal(np.asarray(carry["prev_action"]), np.asarray(action))
    mean_action, _ = vector_agent.policy(
        state, carry, {**obs, "is_first": jnp.zeros(n, bool)}, jax.random.key(1), mode="eval"
    )
    assert float(jnp.abs(mean_action).max()) < 1.0
    with pytest.raises(ValueError):
        vector_agent.policy(state, carry, obs, jax.random.key(0), mode="greedy")


def test_policy_posterior_matches_observe(vector_agent, trained, vector_batch):
    """The policy's filtering step is the same computation as the training scan."""
    _, state, _, _ = trained
    nets = vector_agent.nets(state.params)
    obs = {"state": vector_batch["state"][:, 1], "is_first": jnp.ones(3, bool)}
    _, carry = vector_agent.policy(
        state, vector_agent.initial_carry(3), obs, jax.random.key(0), mode="eval"
    )
    embed = nets.enc({"state": obs["state"]})
    init = nets.dyn.initial(3)
    deter = nets.dyn.core(init["deter"], init["stoch"], jnp.zeros((3, ACT_DIM)))
    np.testing.assert_allclose(carry["deter"], deter, rtol=1e-5, atol=1e-6)
    assert features(carry).shape[-1] == vector_agent.config.feat_size
    assert embed.shape[0] == 3


def test_replay_context_sets_initial_state(vector_agent, trained, vector_batch):
    """A non-zero context at index 0 changes the posterior unless step 1 is_first."""
    _, state, _, _ = trained
    key = jax.random.key(0)
    context_of = jax.jit(lambda batch: vector_agent.loss(state.params, {}, state, batch, key)[1][1])
    batch = {**vector_batch, "is_first": vector_batch["is_first"].at[:, 1].set(False)}
    ctx = {**batch, "deter": batch["deter"].at[:, 0].set(0.5)}
    assert not np.allclose(context_of(batch)["deter"][:, 0], context_of(ctx)["deter"][:, 0])

    def first(b):
        return {**b, "is_first": b["is_first"].at[:, 1].set(True)}

    np.testing.assert_allclose(
        context_of(first(batch))["deter"][:, 0], context_of(first(ctx))["deter"][:, 0], rtol=1e-6
    )


class RewardBonus:
    """Minimal extra loss: a linear map of stop-gradient features regressed to zero, with its
    own optimizer; a constant bonus of 100 is added to the reward."""

    optimizer = optax.sgd(0.1)

    def init(self, key):
        return {"w": jax.random.normal(key, (preset("tiny").feat_size,)) * 0.1}, {"count": 0.0}

    def loss(self, params, state, inputs, key):
        out = jax.lax.stop_gradient(inputs["feat"]) @ params["w"]
        return jnp.mean(out**2), {"out": out.mean(), "rows": out}, jnp.full(out.shape, 100.0)

    def post_update(self, old_params, params, state, metrics):
        assert metrics["rows"].ndim == 2  # array metrics reach post_update
        return params, {"count": state["count"] + 1}


@pytest.mark.slow
def test_extra_loss_image_obs_and_bfloat16():
    """One compile covering the extension hook, image observations and bfloat16 compute."""
    config = preset("tiny", compute_dtype="bfloat16")
    agent = Agent(config, IMAGE_SPEC, ACT_DIM, extra=RewardBonus())
    state = agent.init(jax.random.key(0))
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state.params))
    batch = make_batch(config, IMAGE_SPEC)
    w0 = np.asarray(state.extra_params["w"])
    new, metrics, context = agent.train(state, batch, jax.random.key(1))
    assert all(np.isfinite(np.asarray(v)).all() for v in metrics.values())
    assert not np.allclose(np.asarray(new.extra_params["w"]), w0)
    assert float(new.extra_state["count"]) == 1.0
    assert float(metrics["reward_bonus"]) == 100.0
    assert "extra/out" in metrics and "extra/rows" not in metrics
    assert "loss/rec_image" in metrics and "loss/rec_state" in metrics
    assert context["deter"].dtype == jnp.float32
    # The reward head's target is the stored reward plus the bonus.
    np.testing.assert_allclose(
        metrics["reward_target"], float(batch["reward"][:, 1:].mean()) + 100.0, rtol=1e-5
    )


def test_rejects_missing_observation_keys(tiny_config):
    with pytest.raises(ValueError, match="obs_spec"):
        Agent(tiny_config, {"proprio": ((5,), np.float32)}, ACT_DIM)
    with pytest.raises(ValueError, match="uint8"):
        Agent(tiny_config, {"image": ((64, 64, 3), np.float32)}, ACT_DIM)


def test_heads_need_a_hidden_layer():
    # The heads' first layers run apart from the rest on the imagined rows.
    for name in ("head_layers", "ac_layers"):
        with pytest.raises(ValueError, match=f"{name} must be at least 1"):
            preset("tiny", **{name: 0})


def test_vector_spec_ignores_non_observation_keys(vector_agent):
    assert vector_agent.obs_keys == ("state",)
    assert "reward" in VECTOR_SPEC
