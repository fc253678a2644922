"""absl flags for the environments, and their translation into one EnvConfig per env.

Flags are defined on absl's global FLAGS when this module is imported; `define_env_flags` can
also define them on a separate FlagValues (tests, tools that build their own parser).
"""

from __future__ import annotations

import numpy as np
from absl import flags

from genreward_jax.envs.config import MAX_SEED, REWARD_MODES, EnvConfig
from genreward_jax.envs.rendering import CAMERAS
from genreward_jax.envs.tasks import all_tasks, resolve_task


def define_env_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Define the environment flags (with validators) on `flag_values`."""
    fv = flag_values
    flags.DEFINE_string(
        "task",
        "pick-place",
        "Meta-World v3 task, e.g. pick-place (the -v3 suffix is optional).",
        flag_values=fv,
    )
    flags.DEFINE_integer(
        "seed",
        0,
        "Base seed; each env derives its own from it.",
        lower_bound=0,
        upper_bound=MAX_SEED,
        flag_values=fv,
    )
    flags.DEFINE_enum("camera", "corner", CAMERAS, "Camera of the policy frames.", flag_values=fv)
    flags.DEFINE_integer(
        "image_size",
        64,
        "Side of the square policy frames in pixels.",
        lower_bound=1,
        flag_values=fv,
    )
    flags.DEFINE_integer(
        "action_repeat",
        1,
        "Physics steps per agent step (rewards summed).",
        lower_bound=1,
        flag_values=fv,
    )
    flags.DEFINE_integer(
        "time_limit",
        256,
        "Agent steps per episode (counted after action repeat).",
        lower_bound=1,
        flag_values=fv,
    )
    flags.DEFINE_enum(
        "reward_mode",
        "dense",
        REWARD_MODES,
        "dense: the environment reward every step; sparse: only at steps closing each "
        "--sparse_interval window.",
        flag_values=fv,
    )
    flags.DEFINE_integer(
        "sparse_interval",
        64,
        "Window length of the sparse reward, in agent steps.",
        lower_bound=1,
        flag_values=fv,
    )
    flags.DEFINE_integer(
        "num_envs",
        1,
        "Environments stepped in parallel (one subprocess each).",
        lower_bound=1,
        flag_values=fv,
    )
    flags.DEFINE_bool(
        "full_quality_render",
        False,
        "Keep multisampling, shadows and reflections (several times slower on CPU).",
        flag_values=fv,
    )
    flags.DEFINE_bool(
        "proprio", True, "Include the 39-d Meta-World state in observations.", flag_values=fv
    )
    flags.register_validator("task", _is_valid_task, message=_task_error_message(), flag_values=fv)


def derive_seed(seed: int, index: int, stream: int = 0) -> int:
    """Independent, reproducible seed for env `index` of a stream (e.g. 0 train, 1 eval)."""
    state = np.random.SeedSequence([seed, stream, index]).generate_state(1, dtype=np.uint32)
    return int(state[0])


def env_configs_from_flags(
    flag_values: flags.FlagValues = flags.FLAGS,
    *,
    stream: int = 0,
    num_envs: int | None = None,
    extra_size: int | None = None,
) -> list[EnvConfig]:
    """One EnvConfig per env from parsed flags, each with its own derived seed.

    stream: separates seed streams of env groups built from the same flags (train vs eval).
    num_envs: overrides --num_envs (e.g. a single eval env).
    extra_size: side of the optional extra frame (set by whoever needs it, e.g. the video
      reward), None for no extra frames.
    """
    fv = flag_values
    count = fv.num_envs if num_envs is None else num_envs
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"num_envs must be a positive int, got {count!r}.")
    return [
        EnvConfig(
            task=fv.task,
            seed=derive_seed(fv.seed, index, stream),
            camera=fv.camera,
            size=fv.image_size,
            action_repeat=fv.action_repeat,
            time_limit=fv.time_limit,
            reward_mode=fv.reward_mode,
            sparse_interval=fv.sparse_interval,
            proprio=fv.proprio,
            extra_size=extra_size,
            full_quality=fv.full_quality_render,
        )
        for index in range(count)
    ]


def _is_valid_task(name: str) -> bool:
    try:
        resolve_task(name)
    except ValueError:
        return False
    return True


def _task_error_message() -> str:
    return "--task must be a Meta-World v3 task. Valid names: " + ", ".join(all_tasks())


define_env_flags()
