"""FB on a chain MDP with one-hot states, checked against the closed-form successor measure."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genreward_jax.rewards import fb

N_STATES = 8
P_RIGHT = 0.75
GAMMA = 0.9


def chain_kernels() -> tuple[np.ndarray, np.ndarray]:
    """P_a [2, N, N] for actions (left, right) with walls at both ends; P_pi [N, N]."""
    p = np.zeros((2, N_STATES, N_STATES))
    for s in range(N_STATES):
        p[0, s, max(s - 1, 0)] = 1.0
        p[1, s, min(s + 1, N_STATES - 1)] = 1.0
    p_pi = (1 - P_RIGHT) * p[0] + P_RIGHT * p[1]
    return p, p_pi


def true_measure_over_density() -> np.ndarray:
    """M(s, a, s') / ρ(s') [N, 2, N] with M(s, a) = P_a(s) (I − γ P_π)^-1 and ρ the density of
    next states when s is uniform and a ~ π (how the training data below is drawn)."""
    p, p_pi = chain_kernels()
    resolvent = np.linalg.inv(np.eye(N_STATES) - GAMMA * p_pi)
    m = np.einsum("asn,nk->sak", p, resolvent)
    rho = p_pi.mean(0)
    return m / rho[None, None, :]


def sample_transitions(key: jax.Array, n: int) -> dict[str, jax.Array]:
    p, _ = chain_kernels()
    k_s, k_a, k_a2 = jax.random.split(key, 3)
    s = jax.random.randint(k_s, (n,), 0, N_STATES)
    a = (jax.random.uniform(k_a, (n,)) < P_RIGHT).astype(jnp.int32)
    s_next = jnp.argmax(jnp.asarray(p)[a, s], -1)
    a_next = (jax.random.uniform(k_a2, (n,)) < P_RIGHT).astype(jnp.int32)
    one_s, one_a = jax.nn.one_hot(s, N_STATES), jax.nn.one_hot(a, 2)
    one_s2, one_a2 = jax.nn.one_hot(s_next, N_STATES), jax.nn.one_hot(a_next, 2)
    return {
        "state": one_s,
        "action": one_a,
        "next_state": one_s2,
        "next_action": one_a2,
        "next_goal_feat": one_s2,
        "discount": jnp.full((n,), GAMMA),
        "mask": jnp.ones((n,)),
    }


@pytest.fixture(scope="module")
def trained_fb():
    config = fb.FBConfig(z_dim=16, hidden=64, discount=GAMMA, tau=0.01)
    key = jax.random.key(0)
    params = fb.init_fb(key, config, N_STATES, 2, N_STATES)
    optimizer = optax.adam(1e-3)

    def step(carry, key):
        params, target, opt_state = carry
        k_data, k_z = jax.random.split(key)
        params, target, opt_state, loss = fb.train_step(
            params, target, opt_state, optimizer, config, sample_transitions(k_data, 256), k_z
        )
        return (params, target, opt_state), loss

    @jax.jit
    def train(params):
        keys = jax.random.split(jax.random.key(1), 1500)
        carry, losses = jax.lax.scan(step, (params, params, optimizer.init(params)), keys)
        return carry[0], losses

    params, losses = train(params)
    return config, params, np.asarray(losses)


def learned_measure(config, params, z: jax.Array) -> np.ndarray:
    """F(s, a, z)ᵀ B(s') for all (s, a, s') [N, 2, N] (mean over F heads)."""
    eye = jnp.eye(N_STATES)
    s = jnp.repeat(eye, 2, axis=0)
    a = jnp.tile(jnp.eye(2), (N_STATES, 1))
    zs = jnp.broadcast_to(z, (2 * N_STATES, z.shape[-1]))
    f = fb.forward_embedding(params, config, s, a, zs).mean(0)
    b = fb.backward_embedding(params, config, eye)
    return np.asarray(f @ b.T).reshape(N_STATES, 2, N_STATES)


def test_fb_loss_decreases(trained_fb):
    _, _, losses = trained_fb
    assert np.isfinite(losses).all()
    assert losses[-200:].mean() < losses[:200].mean()


def test_fb_matches_closed_form_successor_measure(trained_fb):
    config, params, _ = trained_fb
    truth = true_measure_over_density().ravel()
    for goal in (0, N_STATES // 2, N_STATES - 1):
        z = fb.goal_z(params, config, jnp.eye(N_STATES)[goal])
        corr = np.corrcoef(learned_measure(config, params, z).ravel(), truth)[0, 1]
        assert corr > 0.9, f"correlation {corr:.3f} with z = B(state {goal})"


def test_fb_reward_ranks_states_by_distance_to_goal(trained_fb):
    config, params, _ = trained_fb
    goal = N_STATES - 1
    z = fb.goal_z(params, config, jnp.eye(N_STATES)[goal])
    right = jnp.tile(jnp.array([[0.0, 1.0]]), (N_STATES, 1))
    q = np.asarray(fb.fb_reward(params, config, jnp.eye(N_STATES), right, z))
    distance = goal - np.arange(N_STATES)
    ranks_q = np.argsort(np.argsort(q))
    ranks_closeness = np.argsort(np.argsort(-distance))
    spearman = np.corrcoef(ranks_q, ranks_closeness)[0, 1]
    assert spearman > 0.9, f"Q {q} does not rank states by closeness (spearman {spearman:.3f})"


def test_normaliser_tracks_mean_and_std():
    values = jax.random.normal(jax.random.key(3), (4096,)) * 5.0 + 2.0
    stats = fb.normaliser_update(fb.normaliser_init(), values, jnp.ones_like(values))
    normed = fb.normalise(stats, values)
    assert abs(float(normed.mean())) < 1e-4
    assert abs(float(normed.std()) - 1.0) < 1e-3


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="target_reduce"):
        fb.FBConfig(target_reduce="max")
    with pytest.raises(ValueError, match="discount"):
        fb.FBConfig(discount=1.0)
