"""Progress lines on stdout: env steps and updates per second since the last line, and a few
metrics, so a person watching a run sees it move."""

from __future__ import annotations

import collections
import contextlib
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

from genreward_jax.metrics_log import scalar


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
            number = scalar(value)
            if number is not None:
                parts.append(f"{key} {number:.4g}")
        print(" | ".join(parts), file=self._stream, flush=True)


class PhaseClock:
    """Wall time the loop spends in each phase (acting, env stepping, the reward model, replay,
    training, evaluation, checkpoints, waiting), read out per log line as seconds and shares:
    where a run's time goes, and how busy the accelerator is. One clock per thread; ``read`` may
    come from another thread (the async loop's actor reads the learner's)."""

    def __init__(self):
        self._seconds: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            with self._lock:
                self._seconds[name] += elapsed

    def read(self, prefix: str = "perf/") -> dict[str, float]:
        """<prefix>seconds_<phase> and <prefix>share_<phase> since the last read (then reset)."""
        with self._lock:
            seconds, self._seconds = self._seconds, collections.Counter()
        total = sum(seconds.values()) or 1.0
        out = {}
        for name, value in sorted(seconds.items()):
            out[f"{prefix}seconds_{name}"] = value
            out[f"{prefix}share_{name}"] = value / total
        return out
