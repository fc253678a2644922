"""One tiny-model scripted goal per test session (no network), shared by the reward tests."""

import pytest

from genreward_jax.goals import load_goal
from preprocessing.goal_builder import GoalConfig, build_goal
from preprocessing.models import ModelSpec

TASK = 'pick-place-v3'


@pytest.fixture(scope='session')
def tiny_goal(tmp_path_factory):
    """(path of goal.npz, GoalFile) for pick-place, scripted expert, 64x64, 17 sampled frames."""
    out = tmp_path_factory.mktemp('goal')
    spec = ModelSpec(mode='tiny', seed=0, tiny_dir=str(out / 'encoders'))
    paths = build_goal(GoalConfig(task=TASK, goal_source='scripted', out_dir=str(out),
                                  models=spec, resolution=64, num_sampled_frames=17, seed=0))
    return paths['goal'], load_goal(paths['goal'])
