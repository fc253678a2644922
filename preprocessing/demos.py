"""Meta-World scripted-expert episodes written as a LoRA finetuning dataset
(prompts.txt + videos.txt + videos/*.mp4). The CLI is collect_demos.py; this module holds the work
so tests and scripts can call it without defining the CLI's absl flags."""

from __future__ import annotations

import os

from tqdm import tqdm

from genreward_jax.atomic import atomic_path
from genreward_jax.media import write_video
from preprocessing import prompts, sources


def write_lines(path: str, lines: list[str]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write("".join(line + "\n" for line in lines))


def collect_demos(
    tasks: list[str],
    episodes: int,
    out_dir: str,
    size: int = 128,
    camera: str = "corner",
    max_steps: int = 256,
    seed: int = 100,
    only_successes: bool = True,
) -> list[tuple[str, str]]:
    """Records expert episodes; returns the [(prompt, relative video path)] rows written."""
    os.makedirs(os.path.join(out_dir, "videos"), exist_ok=True)
    rows = []
    jobs = [(task, seed + i) for task in tasks for i in range(episodes)]
    for task, episode_seed in tqdm(jobs, desc="expert episodes", unit="episode"):
        rollout = sources.expert_rollout(task, episode_seed, size, camera, max_steps)
        frames = rollout.frames
        if only_successes and not rollout.succeeded:
            tqdm.write(f"skipping {task} seed {episode_seed}: the expert did not succeed")
            continue
        relative = os.path.join("videos", f"{task}_seed{episode_seed}.mp4")
        write_video(os.path.join(out_dir, relative), frames, fps=30.0)
        rows.append((prompts.task_prompt(task), relative))
    if not rows:
        raise RuntimeError("no successful expert episodes were recorded")
    write_lines(os.path.join(out_dir, "prompts.txt"), [p for p, _ in rows])
    write_lines(os.path.join(out_dir, "videos.txt"), [v for _, v in rows])
    return rows
