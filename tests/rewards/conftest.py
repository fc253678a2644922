"""One tiny-model scripted goal per test session (no network), shared by the reward tests."""

import pytest

from genreward_jax.goals import load_goal
from preprocessing.goal_builder import GoalConfig, build_goal
from preprocessing.models import ModelSpec
from tests.batches import replay_batch

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
    features = {"state": (39,), "dino": (goal_dim,)}
    return replay_batch(
        config,
        batch,
        length,
        seed,
        reward=False,
        features=features,
        episode_break=4,
        terminal=False,
    )
