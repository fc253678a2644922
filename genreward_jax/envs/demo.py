"""Environment demo: Meta-World's scripted expert for one episode, saved as an mp4.

  python -m genreward_jax.envs.demo --task=pick-place --demo_video=runs/demo/pick-place.mp4

Uses the same flags as training (--task, --seed, --camera, --image_size, ...), so it shows
exactly what the agent will see.
"""

from __future__ import annotations

import warnings

import numpy as np
from absl import app, flags

from genreward_jax.envs.flags import env_configs_from_flags
from genreward_jax.envs.metaworld_env import MetaWorldEnv
from genreward_jax.envs.tasks import expert_policy
from genreward_jax.media import write_video

_VIDEO = flags.DEFINE_string(
    "demo_video", "runs/demo/expert.mp4", "Where the demo writes its video (mp4)."
)
_FPS = flags.DEFINE_integer("demo_fps", 30, "Frames per second of the demo video.", lower_bound=1)


def run_expert_episode(env: MetaWorldEnv) -> tuple[np.ndarray, float, bool]:
    """One episode of the scripted expert: (frames uint8 [T+1, H, W, 3], return, success)."""
    policy = expert_policy(env.config.task)
    obs = env.reset()
    frames, total, success = [obs["image"]], 0.0, False
    with warnings.catch_warnings():
        # The scripted policies warn about their own gains; we clip to [-1, 1] anyway.
        warnings.filterwarnings("ignore", message="Constant\\(s\\) may be too high")
        while not obs["is_last"]:
            obs = env.step(np.clip(policy.get_action(obs["state"]), -1.0, 1.0))
            frames.append(obs["image"])
            total += float(obs["reward"])
            success = success or bool(obs["success"])
    return np.stack(frames), total, success


def main(argv: list[str]) -> None:
    del argv
    config = env_configs_from_flags(num_envs=1)[0]
    with MetaWorldEnv(config) as env:
        frames, total, success = run_expert_episode(env)
    write_video(_VIDEO.value, frames, _FPS.value)
    print(
        f"{config.task} seed {config.seed}: {len(frames) - 1} steps, return {total:.1f}, "
        f"success {success}; video: {_VIDEO.value}"
    )


if __name__ == "__main__":
    app.run(main)
