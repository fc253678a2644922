"""A run's metrics: appended to <logdir>/metrics.jsonl (one JSON object per line) and TensorBoard.

Lines are single appended writes; on resume the file is cut back to the checkpoint's step
(atomically), so a resumed run's curve has no duplicates and no torn line.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from genreward_jax.atomic import atomic_write
from genreward_jax.tensorboard_events import ScalarEventWriter

METRICS_FILE = "metrics.jsonl"


def scalar(value: Any) -> float | None:
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
            self._writer = ScalarEventWriter(os.path.join(logdir, "tb"), purge_step=resume_step)

    def truncate_after(self, step: int) -> None:
        """Drops records past `step` (written after the checkpoint a resumed run restarts from)."""
        if not os.path.exists(self.path):
            return
        kept = [r for r in _parse_records(self.path) if r["step"] <= step]
        atomic_write(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def write(self, step: int, metrics: Mapping[str, Any]) -> dict[str, float]:
        record = {"step": int(step)}
        for key, value in metrics.items():
            number = scalar(value)
            if number is not None:
                record[key] = number
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._writer is not None:
            finite = {k: v for k, v in record.items() if k != "step" and math.isfinite(v)}
            self._writer.scalars(step, finite)
            self._writer.flush()
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
