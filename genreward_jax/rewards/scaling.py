"""Calibration of generated reward terms against the env reward (``--reward_scaling=calibrated``).

A generated term enters the reward as ``w · σ_env · (r − μ) / σ``: standardised with running
statistics of its own raw values (μ, σ) and given a per-step spread that is the fraction w of the
env reward's per-step spread σ_env. Raw terms live on scales that have nothing to do with the env
reward (a cosine that moves by 0.01, a CLIP score), so a literal weight either drowns the env
reward or vanishes next to it; calibrated, w says how loud the term is. Shared by GenReward's
video term and the baselines' per-step rewards.
"""

from __future__ import annotations

import numpy as np

SCALINGS = ("calibrated", "paper")  # --reward_scaling: ours, or the release's literal weights


class RunningStats:
    """Mean and variance of a stream of numbers (Welford), checkpointable as one array."""

    def __init__(self):
        self.count, self.mean, self.m2 = 0.0, 0.0, 0.0

    def update(self, values: np.ndarray) -> None:
        for value in np.asarray(values, np.float64).ravel():
            self.count += 1.0
            delta = value - self.mean
            self.mean += delta / self.count
            self.m2 += delta * (value - self.mean)

    @property
    def std(self) -> float:
        return float(np.sqrt(self.m2 / self.count)) if self.count > 1 else 0.0

    def standardise(self, values: np.ndarray) -> np.ndarray:
        """(x − mean) / std; zero until the spread is known (fewer than two values)."""
        if self.std <= 0.0:
            return np.zeros_like(values)
        return ((values - self.mean) / self.std).astype(values.dtype)

    def array(self) -> np.ndarray:
        return np.array([self.count, self.mean, self.m2], np.float64)

    def load(self, array: np.ndarray) -> None:
        self.count, self.mean, self.m2 = (float(v) for v in np.asarray(array))


def generated_term(
    raw: np.ndarray, stats: RunningStats, scaling: str, weight: float, calibrated_scale: float
) -> np.ndarray:
    """A generated term as it enters the reward, float32 like ``raw``: ``weight·raw`` (``paper``)
    or ``calibrated_scale·(raw − μ)/σ`` (``calibrated``), μ, σ the running statistics of the raw
    values, updated with ``raw`` first. GenReward's video term and the baselines share it."""
    if scaling == "paper":
        return (weight * raw).astype(np.float32)
    stats.update(raw)
    return (calibrated_scale * stats.standardise(raw.astype(np.float64))).astype(np.float32)


def env_spread(env_stats: RunningStats, env_reward_on: bool) -> float:
    """σ_env: per-step std of the env reward so far; 1 with the env reward off or while it has
    not varied (generated terms then speak in their own units)."""
    if not env_reward_on or env_stats.std <= 0:
        return 1.0
    return env_stats.std
