"""Pictures a person looks at: goal.mp4, keyframe.png, and a contact sheet with CLIP scores.

All written atomically (temp file in the same folder, then os.replace).
"""

from __future__ import annotations

import os

import numpy as np

from genreward_jax.atomic import atomic_path
from genreward_jax.goals import GoalFile
from genreward_jax.media import write_video

MAX_TILES = 48


def write_png(path: str, image: np.ndarray) -> None:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")


def tile_indices(num_frames: int, keyframe: int, max_tiles: int = MAX_TILES) -> np.ndarray:
    """Frames shown on the contact sheet: all, or an even subset that includes the keyframe."""
    if num_frames <= max_tiles:
        return np.arange(num_frames)
    shown = np.round(np.linspace(0, num_frames - 1, max_tiles)).astype(int)
    shown[np.argmin(np.abs(shown - keyframe))] = keyframe
    return np.unique(shown)


def write_contact_sheet(path: str, goal: GoalFile, max_tiles: int = MAX_TILES) -> None:
    """Grid of goal frames (index, CLIP score; keyframe in a red frame, VAE-sampled frames marked
    with a blue bar) above a plot of the CLIP score over the whole video."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = tile_indices(goal.frames.shape[0], goal.keyframe_index, max_tiles)
    cols = min(8, len(shown))
    rows = -(-len(shown) // cols)
    sampled = set(goal.frame_indices.tolist())
    fig = plt.figure(figsize=(1.6 * cols, 1.75 * rows + 2.6), dpi=100)
    grid = fig.add_gridspec(rows + 1, cols, height_ratios=[1.75] * rows + [2.2])
    for slot, idx in enumerate(shown):
        ax = fig.add_subplot(grid[slot // cols, slot % cols])
        ax.imshow(goal.frames[idx])
        ax.set_xticks([])
        ax.set_yticks([])
        is_key = idx == goal.keyframe_index
        color, width = ("red", 4) if is_key else ("0.7", 1)
        for spine in ax.spines.values():
            spine.set_edgecolor(color)
            spine.set_linewidth(width)
        label = f"#{idx}  {goal.clip_scores[idx]:.3f}" + ("  KEY" if is_key else "")
        ax.set_title(label, fontsize=7, color="red" if is_key else "black")
        if idx in sampled:
            ax.axhline(goal.frames.shape[1] - 1, color="tab:blue", linewidth=4)
    ax = fig.add_subplot(grid[rows, :])
    ax.plot(goal.clip_scores, color="black", linewidth=1, label="mean CLIP cosine")
    for p, scores in enumerate(goal.clip_scores_per_prompt):
        ax.plot(scores, linewidth=0.6, alpha=0.5, label=f"prompt {p}" if p < 5 else None)
    ax.axvline(goal.keyframe_index, color="red", linestyle="--", label="keyframe")
    ax.plot(
        goal.frame_indices,
        goal.clip_scores[goal.frame_indices],
        "|",
        color="tab:blue",
        markersize=12,
        label="VAE frames",
    )
    ax.set_xlabel("goal frame")
    ax.set_ylabel("CLIP cosine")
    ax.legend(fontsize=6, loc="best", ncol=2)
    prov = goal.provenance
    fig.suptitle(
        f"{goal.task} | source {prov['source']} | {goal.frames.shape[0]} frames at "
        f"{goal.resolution}px | keyframe #{goal.keyframe_index} | VAE frames: blue\n"
        f"keyframe prompt: {goal.keyframe_prompts[0][:90]}"
        + (f" (+{len(goal.keyframe_prompts) - 1} more)" if len(goal.keyframe_prompts) > 1 else ""),
        fontsize=8,
    )
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def write_artefacts(folder: str, goal: GoalFile, source_frames: np.ndarray, fps: float) -> dict:
    """goal.mp4 (the goal video at its source resolution), keyframe.png, contact_sheet.png."""
    paths = {
        "video": os.path.join(folder, "goal.mp4"),
        "keyframe": os.path.join(folder, "keyframe.png"),
        "contact_sheet": os.path.join(folder, "contact_sheet.png"),
    }
    write_video(paths["video"], source_frames, fps)
    write_png(paths["keyframe"], goal.keyframe)
    write_contact_sheet(paths["contact_sheet"], goal)
    return paths
