"""What every reward model that reads a goal file shares: its settings checks, the goal (or bank)
it reads, the goals' placements, and each env's goal of the bank.

``GoalRewards`` (GenReward) and the baselines' reward models (VLM-RM, RoboCLIP, TADPoLe) read
their targets from the same goal files; the members of ``interface.RewardModel`` that depend only
on that are here, once, and so is the whole loop of a baseline that scores every frame
(``FrameRewardBaseline``: VLM-RM and TADPoLe differ only in the score).
"""

from __future__ import annotations

import os

import numpy as np

from genreward_jax.goals import GoalFile, GoalFileError
from genreward_jax.rewards.interface import ReplaySpec
from genreward_jax.rewards.scaling import SCALINGS, RunningStats, env_spread, generated_term

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
        # Running statistics of the raw reward and the env reward (the calibrated scaling).
        self.raw_stats, self.env_stats = RunningStats(), RunningStats()

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

    def state_dict(self) -> dict[str, np.ndarray]:
        """Each env's goal of the bank and the running statistics (subclasses add theirs)."""
        return {
            "goal_index": self._goal_index.copy(),
            "raw_stats": self.raw_stats.array(),
            "env_stats": self.env_stats.array(),
        }

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self._goal_index = np.asarray(state["goal_index"], np.int64).copy()
        self.raw_stats.load(state["raw_stats"])
        self.env_stats.load(state["env_stats"])


class FrameRewardBaseline(GoalFileBaseline):
    """A baseline whose raw reward scores each step's frame (``raw_rewards``), calibrated or
    literal (``scaling.generated_term``) next to the env reward.

    Per env step ``process`` adds to the observation batch:
      * ``r_env`` [N]: the environment reward;
      * ``raw_key`` [N]: the raw score of the frame;
      * ``reward`` [N]: ``r_env·[env reward on] + term``, the term being ``w·raw`` (``paper``: as
        its authors train on it, usually alone with w = 1 and --noenv_reward) or
        ``w·σ_env·(raw − μ)/σ`` (``calibrated``: w is the term's per-step spread as a fraction
        of the env reward's). A reset is no transition: its term is zero.
    The config needs ``weight``, ``env_reward`` and ``reward_scaling``; the frame is the extra
    render at ``frame_size`` when that differs from the policy's.
    """

    def __init__(
        self,
        goals: list[tuple[str, GoalFile]],
        num_envs: int,
        config,
        frame_size: int,
        image_size: int,
    ):
        super().__init__(goals, num_envs)
        self.config = config
        self.frame_size = frame_size
        self.needs_extra_render = frame_size != image_size
        self._raw: list[np.ndarray] = []
        self._scaled: list[np.ndarray] = []

    @property
    def name(self) -> str:
        return self.raw_key.removeprefix("r_")

    def raw_rewards(self, frames: np.ndarray, obs: dict[str, np.ndarray]) -> np.ndarray:
        """[N] float32 raw score of each env's frame [N, S, S, 3] uint8."""
        raise NotImplementedError

    # ------------------------------------------------------------------ RewardModel
    @property
    def extra_size(self) -> int | None:
        return self.frame_size if self.needs_extra_render else None

    def render_mask(self, next_is_first: np.ndarray | None = None) -> np.ndarray:
        return np.full(self.num_envs, self.needs_extra_render)

    def scale(self) -> float:
        """w (paper) or w·σ_env (calibrated): the factor on the raw or standardised reward."""
        if self.config.reward_scaling == "paper":
            return self.config.weight
        return self.config.weight * env_spread(self.env_stats, self.config.env_reward)

    def process(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Adds r_env, the raw score and the combined reward to a batch of observations."""
        cfg = self.config
        first = np.asarray(obs["is_first"], bool)
        self.track_goal_index(obs, first)
        frames = obs["extra_image"] if self.needs_extra_render else obs["image"]
        raw = np.asarray(self.raw_rewards(frames, obs), np.float32)
        r_env = np.asarray(obs["reward"], np.float32)
        self.env_stats.update(r_env[~first])
        term = np.zeros_like(raw)
        term[~first] = generated_term(
            raw[~first], self.raw_stats, cfg.reward_scaling, cfg.weight, self.scale()
        )
        self._raw.append(raw[~first])
        self._scaled.append(term[~first])
        reward = (r_env if cfg.env_reward else np.zeros_like(r_env)) + term
        return {**obs, "r_env": r_env, self.raw_key: raw, "reward": reward.astype(np.float32)}

    def metrics(self) -> dict[str, float]:
        """Raw and scaled reward over the steps since the last call, and the scaled term's
        per-step spread against the env reward's."""
        name = self.name
        out = {
            "rewards/env_scale": float(self.env_stats.std),
            f"rewards/{name}_scale": float(self.scale()),
        }
        raw = np.concatenate(self._raw) if self._raw else np.zeros(0)
        if raw.size:
            scaled = np.concatenate(self._scaled)
            spread = env_spread(self.env_stats, self.config.env_reward)
            out.update(
                {
                    f"rewards/{name}": float(raw.mean()),
                    f"rewards/{name}_std": float(raw.std()),
                    f"rewards/{name}_scaled_std": float(scaled.std()),
                    f"rewards/{name}_step_spread_vs_env": float(scaled.std() / spread),
                }
            )
        self._raw, self._scaled = [], []
        return out
