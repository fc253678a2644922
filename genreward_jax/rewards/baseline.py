"""What every reward model that reads a goal file shares: its settings checks, the goal (or bank)
it reads, the goals' placements, and each env's goal of the bank.

``GoalRewards`` (GenReward) and the baselines' reward models (VLM-RM, RoboCLIP) read their
targets from the same goal files; the members of ``interface.RewardModel`` that depend only on
that are here, once.
"""

from __future__ import annotations

import os

import numpy as np

from genreward_jax.goals import GoalFile, GoalFileError
from genreward_jax.rewards.interface import ReplaySpec
from genreward_jax.rewards.scaling import SCALINGS

ENCODER_DTYPES = ("float32", "bfloat16")


def check_run_settings(goal_file: str, reward_scaling: str, encoder_dtype: str) -> None:
    """ValueError / FileNotFoundError, naming the flag, for settings every reward model has."""
    if reward_scaling not in SCALINGS:
        raise ValueError(f"--reward_scaling must be one of {SCALINGS}, got {reward_scaling!r}")
    if encoder_dtype not in ENCODER_DTYPES:
        raise ValueError(f"--encoder_dtype must be one of {ENCODER_DTYPES}, got {encoder_dtype!r}")
    if not os.path.isfile(goal_file):
        raise FileNotFoundError(
            f"--goal_file {goal_file!r} does not exist; make one with preprocessing/make_goals.py"
        )


def goal_placements(goals: list[tuple[str, GoalFile]]) -> tuple[tuple[float, ...], ...]:
    """Each goal's recorded placement, in bank order (for EnvConfig.placements)."""
    missing = [p for p, g in goals if g.placement is None]
    if missing:
        raise GoalFileError(
            f"{missing[0]} records no object/goal placement (a file goal, a foreign condition "
            "image, or made before placements were recorded): use --placement=random, or remake "
            "it with preprocessing/make_goals.py"
        )
    return tuple(tuple(g.placement.tolist()) for _, g in goals)


class GoalFileBaseline:
    """The goal-file members of ``interface.RewardModel`` for a baseline whose per-step output
    is one raw reward (``raw_key`` in replay) next to the env reward."""

    raw_key: str = ""
    needs_frames = True

    def __init__(self, goals: list[tuple[str, GoalFile]], num_envs: int):
        self.goals = goals
        self.goal_path, self.goal = goals[0]
        self.num_envs = num_envs
        self._goal_index = np.zeros(num_envs, np.int64)

    @property
    def num_goals(self) -> int:
        return len(self.goals)

    @property
    def goal_index(self) -> np.ndarray:
        return self._goal_index

    @property
    def goal_frames(self) -> np.ndarray:
        return self.goal.frames

    @property
    def placements(self) -> tuple[tuple[float, ...], ...]:
        return goal_placements(self.goals)

    def replay_entries(self, obs: dict[str, np.ndarray]) -> ReplaySpec:
        entries = {"r_env": ((), np.float32), self.raw_key: ((), np.float32)}
        if self.num_goals > 1:
            entries["placement"] = ((), np.int32)  # which goal each step's episode uses
        return entries

    def track_goal_index(self, obs: dict[str, np.ndarray], first: np.ndarray) -> None:
        """A bank's episodes use the goal of their placement (obs['placement'] at a reset)."""
        if "placement" in obs and self.num_goals > 1:
            self._goal_index = np.where(first, np.asarray(obs["placement"]), self._goal_index)

    def add_agent_reward(self, reward: np.ndarray) -> None:
        del reward  # the baselines add no loss to the agent
