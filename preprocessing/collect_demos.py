"""Writes a LoRA finetuning dataset (prompts.txt + videos.txt + videos/*.mp4) from Meta-World's
scripted experts rendered by our env, so in-domain finetuning needs nothing downloaded.

    python preprocessing/collect_demos.py --tasks=pick-place-v3,shelf-place-v3 --episodes=8 \
        --size=480 --out_dir=data/demos
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from preprocessing.demos import collect_demos  # noqa: E402

_TASKS = flags.DEFINE_list("tasks", ["pick-place-v3"], "Meta-World tasks to record.")
_EPISODES = flags.DEFINE_integer("episodes", 4, "Episodes per task (seeds seed..seed+episodes-1).")
_SIZE = flags.DEFINE_integer("size", 128, "Square render size of the recorded frames.")
_CAMERA = flags.DEFINE_string("camera", "corner", "Env camera.")
_MAX_STEPS = flags.DEFINE_integer("max_steps", 256, "Episode time limit.")
_SEED = flags.DEFINE_integer("seed", 100, "First env seed.")
_OUT_DIR = flags.DEFINE_string("out_dir", "data/demos", "Dataset folder.")
_ONLY_SUCCESS = flags.DEFINE_bool("only_successes", True, "Skip episodes the expert failed.")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from genreward_jax.envs.tasks import resolve_task

    try:
        tasks = [resolve_task(t) for t in _TASKS.value]
    except ValueError as err:
        sys.exit(f"collect_demos: error: {err}")
    rows = collect_demos(
        tasks,
        _EPISODES.value,
        _OUT_DIR.value,
        _SIZE.value,
        _CAMERA.value,
        _MAX_STEPS.value,
        _SEED.value,
        _ONLY_SUCCESS.value,
    )
    print(f"wrote {len(rows)} clips to {_OUT_DIR.value} (prompts.txt, videos.txt, videos/)")


if __name__ == "__main__":
    app.run(main)
