"""The synthetic agent and batch the train-step benchmarks time: a Meta-World-shaped
observation (39-d state or 64x64x3 image), a 4-d action and random replay contents."""

from __future__ import annotations

VECTOR_DIM = 39
ACT_DIM = 4


def obs_spec(obs: str) -> dict:
    """The agent's observation spec for ``obs`` 'vector' or 'image'."""
    import numpy as np

    if obs not in ("vector", "image"):
        raise ValueError(f"obs must be 'vector' or 'image', got {obs!r}")
    if obs == "vector":
        return {"state": ((VECTOR_DIM,), np.float32)}
    return {"image": ((64, 64, 3), np.uint8)}


def synthetic_batch(config, obs: str, batch: int, length: int) -> dict:
    """A replay batch [B, T+1, ...] of random contents (seed 0) as jax arrays."""
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)
    shape = (batch, length + 1)
    data = {
        "action": rng.uniform(-1, 1, (*shape, ACT_DIM)).astype(np.float32),
        "reward": rng.normal(size=shape).astype(np.float32),
        "is_first": np.zeros(shape, bool),
        "is_last": np.zeros(shape, bool),
        "is_terminal": np.zeros(shape, bool),
        "deter": np.zeros((*shape, config.deter), np.float32),
        "stoch": np.zeros((*shape, config.stoch, config.classes), np.float32),
    }
    if obs == "vector":
        data["state"] = rng.normal(size=(*shape, VECTOR_DIM)).astype(np.float32)
    else:
        data["image"] = rng.integers(0, 256, (*shape, 64, 64, 3), dtype=np.uint8)
    return {k: jnp.asarray(v) for k, v in data.items()}
