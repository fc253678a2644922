"""Lambda returns, return normalisation, KL free nats, and the optimizer chain."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from genreward_jax.dreamer import actor_critic as ac
from genreward_jax.dreamer import distributions as d
from genreward_jax.dreamer.config import preset
from genreward_jax.dreamer.optimizer import (
    flatten,
    learning_rate,
    make_flat_optimizer,
    make_layout,
    scale_by_momentum,
    scale_by_rms,
    unflatten,
)
from genreward_jax.dreamer.world_model import kl_losses


def test_lambda_return_hand_computed():
    # Three steps, lambda 0.5, disc 0.9, no terminals/lasts, boot = val = [1, 2, 4].
    rew = jnp.array([[0.0, 1.0, 2.0]])
    val = jnp.array([[1.0, 2.0, 4.0]])
    zeros = jnp.zeros((1, 3))
    ret = ac.lambda_return(zeros, zeros, rew, val, 0.9, 0.5)
    # R1 = r2 + 0.9 * v2 = 2 + 3.6 = 5.6
    # R0 = r1 + 0.9 * ((1 - 0.5) * v1 + 0.5 * R1) = 1 + 0.9 * (1 + 2.8) = 4.42
    np.testing.assert_allclose(ret, [[4.42, 5.6]], rtol=1e-6)


def test_lambda_return_terminal_and_last():
    rew = jnp.array([[0.0, 1.0, 2.0]])
    val = jnp.array([[1.0, 2.0, 4.0]])
    term = jnp.array([[0.0, 0.0, 1.0]])
    ret = ac.lambda_return(jnp.zeros((1, 3)), term, rew, val, 0.9, 0.5)
    # Terminal at step 2: R1 = r2 = 2; R0 = 1 + 0.9 * (0.5 * 2 + 0.5 * 2) = 2.8
    np.testing.assert_allclose(ret, [[2.8, 2.0]], rtol=1e-6)
    last = jnp.array([[0.0, 1.0, 0.0]])
    ret = ac.lambda_return(last, jnp.zeros((1, 3)), rew, val, 0.9, 0.5)
    # Episode boundary at step 1 cuts the lambda mixing: R0 = r1 + 0.9 * v1 = 2.8
    np.testing.assert_allclose(ret[0, 0], 2.8, rtol=1e-6)


def test_return_normaliser_matches_numpy_percentiles():
    config = preset("tiny")
    ret = jax.random.normal(jax.random.key(0), (64, 15)) * 3 + 1
    state = ac.retnorm_init()
    state, lo, scale = ac.retnorm_update(state, ret, config)
    p5, p95 = np.percentile(np.asarray(ret), [5, 95])
    np.testing.assert_allclose(state["lo"], 0.01 * p5, rtol=1e-5)
    np.testing.assert_allclose(state["hi"], 0.01 * p95, rtol=1e-5)
    np.testing.assert_allclose(scale, 1.0)  # 0.01 * (p95 - p5) < 1 -> limit
    for _ in range(2000):
        state, lo, scale = ac.retnorm_update(state, ret, config)
    np.testing.assert_allclose([lo, scale], [p5, p95 - p5], rtol=1e-4)


def test_kl_free_nats():
    post = d.unimix_logits(jnp.array([[[3.0, 0.0, 0.0, 0.0]] * 2]), 0.01)
    prior = d.unimix_logits(jnp.zeros((1, 2, 4)), 0.01)
    raw = float(d.categorical_kl(post, prior).sum(-1)[0])
    assert raw > 1.0
    dyn, rep = kl_losses(post, prior, 1.0)
    np.testing.assert_allclose([dyn[0], rep[0]], [raw, raw], rtol=1e-6)
    # Below the free nats the loss is constant 1 and sends no gradient.
    close = d.unimix_logits(jnp.array([[[0.1, 0.0, 0.0, 0.0]] * 2]), 0.01)
    dyn, rep = kl_losses(close, prior, 1.0)
    np.testing.assert_allclose([dyn[0], rep[0]], [1.0, 1.0])
    grad = jax.grad(lambda p: sum(x.sum() for x in kl_losses(p, prior, 1.0)))(close)
    np.testing.assert_array_equal(np.asarray(grad), 0.0)
    # Above them: dyn trains only the prior, rep only the posterior.
    g_post = jax.grad(lambda p: kl_losses(p, prior, 1.0)[0].sum())(post)
    g_prior = jax.grad(lambda q: kl_losses(post, q, 1.0)[0].sum())(prior)
    assert float(jnp.abs(g_post).sum()) == 0.0 and float(jnp.abs(g_prior).sum()) > 0
    g_post = jax.grad(lambda p: kl_losses(p, prior, 1.0)[1].sum())(post)
    g_prior = jax.grad(lambda q: kl_losses(post, q, 1.0)[1].sum())(prior)
    assert float(jnp.abs(g_post).sum()) > 0 and float(jnp.abs(g_prior).sum()) == 0.0


def clip_by_agc(clip: float = 0.3, pmin: float = 1e-3) -> optax.GradientTransformation:
    """Reference: adaptive gradient clipping per tensor, ||g|| <= clip * max(pmin, ||p||)."""

    def update_fn(updates, state, params=None):
        def fn(param, update):
            unorm = jnp.linalg.norm(update.reshape(-1))
            upper = clip * jnp.maximum(pmin, jnp.linalg.norm(param.reshape(-1)))
            return update / jnp.maximum(1.0, unorm / upper)

        return jax.tree.map(fn, params, updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def make_optimizer(config) -> optax.GradientTransformation:
    """Reference: the LaProp chain on a pytree, tensor by tensor (the agent runs the flat one)."""
    return optax.chain(
        clip_by_agc(config.agc, config.agc_pmin),
        scale_by_rms(config.beta2, config.eps),
        scale_by_momentum(config.beta1),
        optax.scale_by_learning_rate(learning_rate(config)),
    )


def test_optimizer_chain_hand_computed():
    config = preset("tiny", warmup=10, lr=1e-2)
    opt = make_optimizer(config)
    params = {"big": jnp.array([3.0, 4.0]), "small": jnp.array([0.0, 0.0])}
    grads = {"big": jnp.array([30.0, 0.0]), "small": jnp.array([1e-4, -2e-4])}
    state = opt.init(params)
    updates, state = opt.update(grads, state, params)
    # Warmup: lr is 0 at the first update.
    np.testing.assert_array_equal(np.asarray(updates["big"]), 0.0)
    updates, state = opt.update(grads, state, params)

    def reference(p, g, steps=2):
        g = np.asarray(g, np.float64)
        upper = 0.3 * max(1e-3, np.linalg.norm(p))
        g = g / max(1.0, np.linalg.norm(g) / upper)  # AGC: ||g|| <= 0.3 max(1e-3, ||p||)
        nu = mu = 0.0
        for t in range(1, steps + 1):
            nu = 0.999 * nu + 0.001 * g**2
            u = g / (np.sqrt(nu / (1 - 0.999**t)) + 1e-20)
            mu = 0.9 * mu + 0.1 * u
            out = mu / (1 - 0.9**t)
        lr = 1e-2 * 1 / 10  # second update: count 1 of 10
        return -lr * out

    np.testing.assert_allclose(
        updates["big"], reference(params["big"], grads["big"]), rtol=1e-5, atol=1e-12
    )
    np.testing.assert_allclose(
        updates["small"], reference(params["small"], grads["small"]), rtol=1e-5
    )
    # AGC clipped 'big' (norm 30 > 0.3 * 5); a zero gradient entry stays exactly zero.
    assert abs(float(updates["big"][0])) > 0 and float(updates["big"][1]) == 0.0


def test_flat_optimizer_matches_pytree_chain():
    config = preset("tiny", warmup=3, lr=1e-2)
    keys = jax.random.split(jax.random.key(0), 4)
    params = {
        "a": jax.random.normal(keys[0], (5, 7)),
        "b": jnp.zeros((3,)),
        "c": {"d": jax.random.normal(keys[1], (300,)) * 1e-4},
    }
    layout = make_layout(params, width=16)
    assert layout.rows == 3 + 1 + 19
    np.testing.assert_array_equal(unflatten(layout, flatten(layout, params))["a"], params["a"])
    tree_opt, flat_opt = make_optimizer(config), make_flat_optimizer(config, layout)
    tree_state = tree_opt.init(params)
    flat_state = flat_opt.init(flatten(layout, params))
    for step in range(4):
        grads = jax.tree.map(
            lambda p, k=step: jax.random.normal(jax.random.key(k), p.shape) * 3, params
        )
        tree_up, tree_state = tree_opt.update(grads, tree_state, params)
        flat_up, flat_state = flat_opt.update(
            flatten(layout, grads), flat_state, flatten(layout, params)
        )
        for a, b in zip(
            jax.tree.leaves(tree_up), jax.tree.leaves(unflatten(layout, flat_up)), strict=True
        ):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-9)
        params = optax.apply_updates(params, tree_up)
