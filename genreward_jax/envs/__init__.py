"""Meta-World environments for the online stage: pixels, proprio, rewards, subprocess batches.

The rendering variables are set here, before anything below imports mujoco or OpenGL, because
the GL backend is chosen once at import time; `setdefault` keeps a user's explicit choice
(e.g. MUJOCO_GL=osmesa on a machine without EGL).
"""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

from genreward_jax.envs.batch import EnvBatch  # noqa: E402
from genreward_jax.envs.config import REWARD_MODES, EnvConfig  # noqa: E402
from genreward_jax.envs.metaworld_env import ACT_DIM, MetaWorldEnv, observation_spec  # noqa: E402
from genreward_jax.envs.rendering import CAMERAS  # noqa: E402
from genreward_jax.envs.tasks import PAPER_TASKS, all_tasks, expert_policy, resolve_task  # noqa: E402

__all__ = [
    "ACT_DIM",
    "CAMERAS",
    "PAPER_TASKS",
    "REWARD_MODES",
    "EnvBatch",
    "EnvConfig",
    "MetaWorldEnv",
    "all_tasks",
    "expert_policy",
    "observation_spec",
    "resolve_task",
]
