"""VLM-RM's reward against hand computations: cosine at λ = 0, only the goal direction at λ = 1."""

import jax.numpy as jnp
import numpy as np
import pytest

from genreward_jax.rewards.vlmrm import projection, prompt_embedding, vlmrm_reward

D = 6


def unit(v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


def test_lambda_zero_is_cosine_similarity_to_the_goal():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, D)).astype(np.float32) * 3.0  # scale must not matter
    goal, baseline = unit(rng.normal(size=D)), unit(rng.normal(size=D))
    want = (x / np.linalg.norm(x, axis=1, keepdims=True)) @ goal
    np.testing.assert_allclose(np.asarray(vlmrm_reward(x, goal, baseline, 0.0)), want, rtol=1e-5)


def test_lambda_one_counts_only_the_baseline_to_goal_direction():
    goal, baseline = unit([1, 0, 0, 0, 0, 0]), unit([0, 1, 0, 0, 0, 0])
    d = unit(goal - baseline)
    on_goal = goal
    # Moving orthogonally to d (here along axis 2) leaves the λ = 1 reward unchanged...
    sideways = unit(goal + 0.8 * np.eye(D, dtype=np.float32)[2])
    r = np.asarray(vlmrm_reward(np.stack([on_goal, sideways]), goal, baseline, 1.0))
    # ...except through the normalisation of x, which shrinks its component along d.
    x = sideways
    expected = 1.0 - 0.5 * float(((x - goal) @ d) ** 2)
    np.testing.assert_allclose(r, [1.0, expected], rtol=1e-5)
    # Moving towards the baseline lowers it.
    towards_baseline = unit(goal + 0.8 * baseline)
    assert float(vlmrm_reward(towards_baseline[None], goal, baseline, 1.0)[0]) < expected


def test_projection_and_prompt_average():
    goal, baseline = unit([1, 2, 0, 0, 0, 0]), unit([0, 0, 1, 0, 0, 0])
    p = np.asarray(projection(jnp.asarray(goal), jnp.asarray(baseline), 0.5))
    d = unit(goal - baseline)
    np.testing.assert_allclose(p, 0.5 * np.outer(d, d) + 0.5 * np.eye(D), atol=1e-6)
    np.testing.assert_allclose(p @ d, d, atol=1e-6)  # d is an eigenvector with eigenvalue 1
    prompts = np.stack([3 * unit([1, 1, 0, 0, 0, 0]), unit([1, -1, 0, 0, 0, 0])])
    np.testing.assert_allclose(
        np.asarray(prompt_embedding(prompts)), unit([1, 0, 0, 0, 0, 0]), atol=1e-6
    )
    with pytest.raises(ValueError, match="lambda"):
        projection(jnp.asarray(goal), jnp.asarray(baseline), 1.5)
