"""VLM-RM (Rocamonde et al., ICLR 2024): a CLIP reward per frame, with goal-baseline projection.

    r(s) = 1 − ½ ‖(x − g) P‖²,   P = λ · d dᵀ + (1 − λ) · I,   d = (g − b) / ‖g − b‖

x is the L2-normalised CLIP image embedding of the frame, g the normalised mean embedding of the
goal prompts ("a robot arm placing the puck at the goal"), b that of the baseline prompts ("a
robot arm"). With λ = 0 the reward is the cosine similarity to the goal (½‖x − g‖² = 1 − cos for
unit vectors); λ → 1 keeps only the component of x − g along the baseline-to-goal direction, so
what the two prompts share (the scene, the robot) stops counting. λ = 0.5 is the paper's
default. The text embeddings are computed offline with open_clip and stored in the goal file;
only the image side runs online (``encoders.clip_vit``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

f32 = jnp.float32


def normalise(x: jax.Array) -> jax.Array:
    """L2-normalise the last axis (CLIP's embeddings are compared on the unit sphere)."""
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def prompt_embedding(text_embeddings: jax.Array) -> jax.Array:
    """Several prompts' embeddings [P, D] -> one direction [D]: the normalised mean of the
    normalised embeddings (VLM-RM averages its goal and baseline templates this way)."""
    return normalise(normalise(text_embeddings).mean(0))


def projection(goal: jax.Array, baseline: jax.Array, lam: float) -> jax.Array:
    """P [D, D] = λ · d dᵀ + (1 − λ) · I for the unit direction d from baseline to goal."""
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"VLM-RM lambda must be in [0, 1], got {lam}")
    d = normalise(goal - baseline)
    return lam * jnp.outer(d, d) + (1.0 - lam) * jnp.eye(goal.shape[-1], dtype=goal.dtype)


def vlmrm_reward(
    image_embeddings: jax.Array, goal: jax.Array, baseline: jax.Array, lam: float = 0.5
) -> jax.Array:
    """Reward [N] of frames with CLIP image embeddings [N, D] (unnormalised, as the tower
    returns them), for goal and baseline directions [D] (``prompt_embedding``)."""
    x = normalise(image_embeddings.astype(f32))
    g = normalise(goal.astype(f32))
    p = projection(g, normalise(baseline.astype(f32)), lam)
    return 1.0 - 0.5 * jnp.square((x - g) @ p).sum(-1)
