"""One tiny-model scripted goal per test session (no network), shared by the reward tests."""

import jax.numpy as jnp
import numpy as np
import pytest

from genreward_jax.envs import ACT_DIM
from genreward_jax.goals import load_goal
from preprocessing.goal_builder import GoalConfig, build_goal
from preprocessing.models import ModelSpec

TASK = "pick-place-v3"


@pytest.fixture(scope="session")
def tiny_goal(tmp_path_factory):
    """(path of goal.npz, GoalFile) for pick-place, scripted expert, 64x64, 17 sampled frames."""
    out = tmp_path_factory.mktemp("goal")
    spec = ModelSpec(mode="tiny", seed=0, tiny_dir=str(out / "encoders"))
    paths = build_goal(
        GoalConfig(
            task=TASK,
            goal_source="scripted",
            out_dir=str(out),
            models=spec,
            resolution=64,
            num_sampled_frames=17,
            seed=0,
        )
    )
    return paths["goal"], load_goal(paths["goal"])


FB_GOAL_DIM = 8


def make_fb_batch(config, batch=3, length=6, seed=0, goal_dim=FB_GOAL_DIM):
    """Random replay batch [B, T+1, ...] for an agent with FB: 39-d states, DINOv3-like features,
    no reward at all, and one episode boundary (is_last at [0, 3], a new episode at [0, 4])."""
    rng = np.random.default_rng(seed)
    shape = (batch, length + 1)
    out = {
        "state": rng.normal(size=(*shape, 39)).astype(np.float32),
        "dino": rng.normal(size=(*shape, goal_dim)).astype(np.float32),
        "action": rng.uniform(-1, 1, (*shape, ACT_DIM)).astype(np.float32),
        "reward": np.zeros(shape, np.float32),
        "r_env": np.zeros(shape, np.float32),
        "is_first": np.zeros(shape, bool),
        "is_last": np.zeros(shape, bool),
        "is_terminal": np.zeros(shape, bool),
        "deter": np.zeros((*shape, config.deter), np.float32),
        "stoch": np.zeros((*shape, config.stoch, config.classes), np.float32),
    }
    out["is_first"][:, 0] = True
    out["is_first"][0, 4] = True
    out["is_last"][0, 3] = True
    return {k: jnp.asarray(v) for k, v in out.items()}
