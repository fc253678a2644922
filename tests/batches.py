"""The one random replay batch builder of the agent tests (DreamerV3 alone and with FB)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from genreward_jax.envs import ACT_DIM


def replay_batch(
    config,
    batch: int = 3,
    length: int = 6,
    seed: int = 0,
    *,
    reward: bool = True,
    features: dict[str, tuple[int, ...]] | None = None,
    episode_break: int = 3,
    terminal: bool = True,
) -> dict:
    """Random replay batch [B, T+1, ...] in the agent's layout: actions in [-1, 1], rewards
    N(0, 1) (`reward`) or zero (then an all-zero 'r_env' too), the given `features` (name ->
    per-step shape; uint8 images for 3-D shapes, N(0, 1) otherwise), zero RSSM carries, every row
    starting an episode, row 0 ending one at `episode_break` - 1 and starting the next at
    `episode_break`, and (`terminal`) row 1 ending on a terminal step."""
    rng = np.random.default_rng(seed)
    shape = (batch, length + 1)
    out = {"action": rng.uniform(-1, 1, (*shape, ACT_DIM)).astype(np.float32)}
    if reward:
        out["reward"] = rng.normal(size=shape).astype(np.float32)
    else:
        out["reward"] = np.zeros(shape, np.float32)
        out["r_env"] = np.zeros(shape, np.float32)
    for name, per_step in (features or {}).items():
        if len(per_step) == 3:
            out[name] = rng.integers(0, 256, (*shape, *per_step), dtype=np.uint8)
        else:
            out[name] = rng.normal(size=(*shape, *per_step)).astype(np.float32)
    out.update(
        is_first=np.zeros(shape, bool),
        is_last=np.zeros(shape, bool),
        is_terminal=np.zeros(shape, bool),
        deter=np.zeros((*shape, config.deter), np.float32),
        stoch=np.zeros((*shape, config.stoch, config.classes), np.float32),
    )
    out["is_first"][:, 0] = True
    out["is_first"][0, episode_break] = True
    out["is_last"][0, episode_break - 1] = True
    if terminal:
        out["is_terminal"][1, -1] = True
    return {k: jnp.asarray(v) for k, v in out.items()}
