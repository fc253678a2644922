"""Run logging: stdout progress with rates, metrics.jsonl, TensorBoard, mp4 videos, flags, curves.

Everything a run writes lives in its log directory. Files that are rewritten (flags, videos, the
curve PNG, a truncated metrics.jsonl on resume) go through a temporary file and `os.replace`, so a
crash never leaves a half-written file; metrics.jsonl lines are single appended writes.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

METRICS_FILE = "metrics.jsonl"
FLAGS_FILE = "flags.cfg"


def atomic_write_bytes(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: str, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def _scalar(value: Any) -> float | None:
    """Float of a numeric scalar (numpy/jax included); None for anything else."""
    try:
        array = np.asarray(value)
    except Exception:  # noqa: BLE001 - non-array values are simply not logged as scalars
        return None
    if array.shape != () or not np.issubdtype(array.dtype, np.number) and array.dtype != bool:
        return None
    return float(array)


class MetricsLogger:
    """Appends scalars to metrics.jsonl and TensorBoard; `step` is the env step count."""

    def __init__(self, logdir: str, resume_step: int | None = None, tensorboard: bool = True):
        os.makedirs(logdir, exist_ok=True)
        self.path = os.path.join(logdir, METRICS_FILE)
        if resume_step is not None:
            self.truncate_after(resume_step)
        self._writer = None
        if tensorboard:
            from tensorboardX import SummaryWriter  # heavy import, only when used

            self._writer = SummaryWriter(
                os.path.join(logdir, "tb"), purge_step=resume_step, flush_secs=30
            )

    def truncate_after(self, step: int) -> None:
        """Drops records past `step` (written after the checkpoint a resumed run restarts from)."""
        if not os.path.exists(self.path):
            return
        kept = [r for r in _parse_records(self.path) if r["step"] <= step]
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def write(self, step: int, metrics: Mapping[str, Any]) -> dict[str, float]:
        record = {"step": int(step)}
        for key, value in metrics.items():
            number = _scalar(value)
            if number is not None:
                record[key] = number
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._writer is not None:
            for key, value in record.items():
                if key != "step" and math.isfinite(value):
                    self._writer.add_scalar(key, value, step)
        return record

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _parse_records(path: str) -> list[dict[str, float]]:
    """Records of a metrics.jsonl; a torn last line (process killed mid-write) is skipped."""
    records = []
    with open(path) as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def read_metrics(logdir: str) -> list[dict[str, float]]:
    path = os.path.join(logdir, METRICS_FILE)
    return _parse_records(path) if os.path.exists(path) else []


class Progress:
    """Prints env steps/s and updates/s since the previous line, plus a few chosen metrics."""

    def __init__(self, env_steps: int = 0, updates: int = 0, stream=sys.stdout):
        self._stream = stream
        self._last = (time.perf_counter(), env_steps, updates)

    def rates(self, env_steps: int, updates: int) -> dict[str, float]:
        now = time.perf_counter()
        then, last_steps, last_updates = self._last
        elapsed = max(now - then, 1e-9)
        self._last = (now, env_steps, updates)
        return {
            "perf/env_steps_per_s": (env_steps - last_steps) / elapsed,
            "perf/updates_per_s": (updates - last_updates) / elapsed,
        }

    def print(
        self, env_steps: int, updates: int, rates: Mapping[str, float], metrics: Mapping[str, Any]
    ) -> None:
        parts = [
            f"step {env_steps:>8d}",
            f"updates {updates:>6d}",
            f"{rates['perf/env_steps_per_s']:7.1f} env steps/s",
            f"{rates['perf/updates_per_s']:6.2f} updates/s",
        ]
        for key, value in metrics.items():
            number = _scalar(value)
            if number is not None:
                parts.append(f"{key} {number:.4g}")
        print(" | ".join(parts), file=self._stream, flush=True)


def write_video(path: str, frames: np.ndarray, fps: int = 20) -> None:
    """frames: uint8 [T, H, W, 3] -> H.264 mp4 (sides padded to a multiple of 16 by ffmpeg)."""
    import imageio.v2 as imageio  # imageio-ffmpeg provides the ffmpeg binary

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(
            f"video frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}"
        )
    tmp = f"{path}.tmp{os.getpid()}.mp4"
    with warnings.catch_warnings():
        # JAX warns on any fork; imageio's fork is immediately followed by exec of ffmpeg.
        warnings.filterwarnings("ignore", message="os.fork", category=RuntimeWarning)
        with imageio.get_writer(
            tmp, fps=fps, codec="libx264", quality=8, macro_block_size=16, ffmpeg_log_level="error"
        ) as writer:
            for frame in frames:
                writer.append_data(frame)
    os.replace(tmp, path)


def flags_to_string(flag_values, module_prefixes: Iterable[str] = ("genreward_jax",)) -> str:
    """The resolved values of our flags (not absl's own) in flagfile format, one per line."""
    lines = []
    for module, module_flags in sorted(flag_values.flags_by_module_dict().items()):
        name = module.replace("/", ".")
        if not any(prefix in name for prefix in module_prefixes) and module != "__main__":
            continue
        lines.append(f"# {module}")
        lines.extend(
            flag.serialize()
            for flag in sorted(module_flags, key=lambda f: f.name)
            if flag.serialize()
        )
    return "\n".join(lines) + "\n"


def beside_goal(frames: np.ndarray, goal_frames: np.ndarray) -> np.ndarray:
    """Agent frames [T, H, W, 3] with the goal video [N, R, R, 3] to their right, both at the
    agent's size; the goal plays at one frame per step and holds its last frame."""
    from PIL import Image

    height, width = frames.shape[1:3]
    goal = np.stack(
        [
            np.asarray(Image.fromarray(f).resize((width, height), Image.BILINEAR))
            for f in goal_frames
        ]
    )
    index = np.minimum(np.arange(len(frames)), len(goal) - 1)
    return np.concatenate([frames, goal[index]], axis=2)


def write_flags(logdir: str, flag_values) -> str:
    path = os.path.join(logdir, FLAGS_FILE)
    atomic_write_text(path, flags_to_string(flag_values))
    return path


def plot_learning_curve(
    logdir: str,
    keys: Iterable[str] = ("eval/return", "eval/success", "episode/return", "rewards/video"),
    filename: str = "learning_curve.png",
) -> str | None:
    """One panel per key present in metrics.jsonl, x = env steps. None if nothing to plot."""
    records = read_metrics(logdir)
    series = {key: [(r["step"], r[key]) for r in records if key in r] for key in keys}
    series = {k: v for k, v in series.items() if v}
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(series), figsize=(4.5 * len(series), 3.2), squeeze=False)
    for ax, (key, points) in zip(axes[0], series.items(), strict=True):
        steps, values = zip(*points, strict=True)
        ax.plot(steps, values, marker="o")
        ax.set_xlabel("env steps")
        ax.set_title(key)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = os.path.join(logdir, filename)
    tmp = f"{path}.tmp{os.getpid()}.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return path
