"""The learning-curve PNG a run redraws at every stop (<logdir>/learning_curve.png)."""

from __future__ import annotations

import os
from collections.abc import Iterable

from genreward_jax.atomic import atomic_path
from genreward_jax.metrics_log import read_metrics


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
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return path
