import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genreward_jax.dreamer import distributions as dists
from genreward_jax.dreamer.rssm import RSSM, features

B, T, A, E = 3, 5, 2, 7


def make_rssm(dtype=jnp.float32):
    return RSSM(
        deter=16,
        hidden=8,
        stoch=3,
        classes=4,
        blocks=4,
        act_dim=A,
        embed_size=E,
        unimix=0.01,
        rngs=nnx.Rngs(0),
        dtype=dtype,
    )


def test_observe_shapes_and_onehot():
    rssm = make_rssm()
    rng = np.random.default_rng(0)
    states, logits = rssm.observe(
        rssm.initial(B),
        jnp.asarray(rng.normal(size=(B, T, A)), jnp.float32),
        jnp.asarray(rng.normal(size=(B, T, E)), jnp.float32),
        jnp.zeros((B, T), bool),
        jax.random.key(0),
    )
    assert states["deter"].shape == (B, T, 16) and states["deter"].dtype == jnp.float32
    assert states["stoch"].shape == (B, T, 3, 4)
    assert logits.shape == (B, T, 3, 4)
    np.testing.assert_allclose(np.asarray(states["stoch"]).sum(-1), 1.0, rtol=1e-6)
    assert features(states).shape == (B, T, 16 + 12)


def test_is_first_resets_state_and_action():
    rssm = make_rssm()
    embed = jnp.ones((B, E))
    first = jnp.array([True, True, False])
    noise = jnp.full((B, 3), 0.5)  # one uniform per latent
    garbage = {"deter": jnp.full((B, 16), 5.0), "stoch": jnp.full((B, 3, 4), 1.0)}
    out_reset, _ = rssm.obs_step(garbage, jnp.full((B, A), 3.0), embed, first, noise)
    out_zero, _ = rssm.obs_step(
        rssm.initial(B), jnp.zeros((B, A)), embed, jnp.zeros((B,), bool), noise
    )
    np.testing.assert_allclose(out_reset["deter"][:2], out_zero["deter"][:2], rtol=1e-6)
    assert not np.allclose(out_reset["deter"][2], out_zero["deter"][2])


def test_action_scaled_by_magnitude():
    rssm = make_rssm()
    state = rssm.initial(1)
    big = rssm.core(state["deter"], state["stoch"], jnp.array([[4.0, 0.5]]))
    unit = rssm.core(state["deter"], state["stoch"], jnp.array([[1.0, 0.5]]))
    np.testing.assert_allclose(big, unit, rtol=1e-6)


def test_imagine_shapes_and_start_state():
    rssm = make_rssm()
    start = {"deter": jnp.ones((B, 16)) * 0.1, "stoch": jax.nn.one_hot(jnp.zeros((B, 3), int), 4)}

    def policy(state, noise):
        return jnp.tanh(state["deter"][:, :A]) + 0 * noise, {"first": state["deter"][:, :1]}

    states, actions, aux = rssm.imagine(start, policy, 4, jax.random.key(0), A)
    assert states["deter"].shape == (5, B, 16) and states["stoch"].shape == (5, B, 3, 4)
    assert actions.shape == (5, B, A)
    np.testing.assert_allclose(states["deter"][0], start["deter"])
    np.testing.assert_allclose(actions[0], jnp.tanh(start["deter"][:, :A]), rtol=1e-6)
    # aux is stacked like the states: each step's value from that step's state.
    np.testing.assert_array_equal(aux["first"], states["deter"][..., :1])


def test_bfloat16_compute():
    rssm = make_rssm(jnp.bfloat16)
    states, logits = rssm.observe(
        rssm.initial(B),
        jnp.zeros((B, T, A)),
        jnp.ones((B, T, E)),
        jnp.zeros((B, T), bool),
        jax.random.key(0),
    )
    assert logits.dtype == jnp.float32
    assert bool(jnp.isfinite(states["deter"]).all())


def _block_gru_reference(rssm, deter, stoch, action):
    """The block GRU step written block by block from its definition (numpy, float64)."""
    g, dg = rssm.blocks, rssm.deter // rssm.blocks

    def norm_act(layer, x):
        y = x @ np.asarray(layer.linear.kernel[...]) + np.asarray(layer.linear.bias[...])
        y = y / np.sqrt((y**2).mean(-1, keepdims=True) + layer.norm.eps)
        y = y * np.asarray(layer.norm.scale[...])
        return y / (1 + np.exp(-y))

    deter, stoch, action = (np.asarray(a, np.float64) for a in (deter, stoch, action))
    action = action / np.maximum(1.0, np.abs(action))
    x = np.concatenate(
        [
            norm_act(rssm.dynin_deter, deter),
            norm_act(rssm.dynin_stoch, stoch.reshape((len(stoch), -1))),
            norm_act(rssm.dynin_action, action),
        ],
        -1,
    )
    kernel = np.asarray(rssm.dynhid.kernel[...])  # [G, D/G + 3H, D/G]
    hidden = np.concatenate(
        [np.concatenate([deter[:, i * dg : (i + 1) * dg], x], -1) @ kernel[i] for i in range(g)], -1
    ) + np.asarray(rssm.dynhid.bias[...])
    hidden = hidden / np.sqrt((hidden**2).mean(-1, keepdims=True) + rssm.dynhid_norm.eps)
    hidden = hidden * np.asarray(rssm.dynhid_norm.scale[...])
    hidden = hidden / (1 + np.exp(-hidden))
    gru_kernel = np.asarray(rssm.dyngru.kernel[...])  # [G, D/G, 3 D/G]
    gru_bias = np.asarray(rssm.dyngru.bias[...]).reshape((g, 3 * dg))
    new = []
    for i in range(g):
        out = hidden[:, i * dg : (i + 1) * dg] @ gru_kernel[i] + gru_bias[i]
        reset, cand, update = out[:, :dg], out[:, dg : 2 * dg], out[:, 2 * dg :]
        reset = 1 / (1 + np.exp(-reset))
        cand = np.tanh(reset * cand)
        update = 1 / (1 + np.exp(-(update - 1)))
        new.append(update * cand + (1 - update) * deter[:, i * dg : (i + 1) * dg])
    return np.concatenate(new, -1)


def test_block_gru_equals_its_block_by_block_definition_in_both_layouts():
    rssm = make_rssm()
    rng = np.random.default_rng(0)
    for layer in (rssm.dynhid, rssm.dyngru):  # non-zero biases, so their layout is checked
        layer.bias[...] = jnp.asarray(rng.normal(size=layer.bias.shape), jnp.float32)
    deter = jnp.asarray(rng.normal(size=(B, 16)), jnp.float32)
    stoch = jax.nn.one_hot(jnp.asarray(rng.integers(0, 4, (B, 3))), 4)
    action = jnp.asarray(rng.normal(size=(B, A)) * 2, jnp.float32)
    expected = _block_gru_reference(rssm, deter, stoch, action)
    np.testing.assert_allclose(rssm.core(deter, stoch, action), expected, rtol=1e-5, atol=1e-6)
    new, grouped = rssm.grouped_core(deter, rssm.to_groups(deter), stoch, rssm.action_input(action))
    np.testing.assert_allclose(new, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(grouped, rssm.to_groups(new))


def test_prior_sample_equals_inverse_cdf_sampling_of_the_prior_probs():
    """The classes-first prior sample (reordered logit columns) picks the same class as
    ``onehot_inverse_cdf`` of ``prior_probs`` for every categorical."""
    rssm = make_rssm()
    rng = np.random.default_rng(7)
    rssm.prior_logit.kernel[...] = jnp.asarray(rng.normal(size=rssm.prior_logit.kernel.shape))
    rssm.prior_logit.bias[...] = jnp.asarray(rng.normal(size=rssm.prior_logit.bias.shape))
    deter = jnp.asarray(rng.normal(size=(256, 16)), jnp.float32)
    uniform = jnp.asarray(rng.random((256, 3)), jnp.float32)
    sample = rssm.prior_sample(deter, uniform)
    assert sample.shape == (256, 3, 4)
    np.testing.assert_array_equal(
        sample, dists.onehot_inverse_cdf(uniform, rssm.prior_probs(deter))
    )
    assert len(np.unique(np.asarray(sample).argmax(-1))) == 4  # every class gets picked
