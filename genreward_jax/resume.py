"""Exact resume of the env loop: what the trainer checkpoints besides the agent and replay.

MuJoCo state is not checkpointed; instead ``LoopState`` records how many episodes each env has
started and the actions applied since its current episode began. On resume the envs are rebuilt
from the same configs (seeds), reset that many times (each reset draws the next object/goal
placement from the env's seeded RNG, exactly as the auto-reset does) and the recorded actions are
replayed (``restore_envs``). The rebuilt observation is compared with the checkpointed one; any
difference is reported and the run continues from the rebuilt env (then it is no longer bitwise
identical to an uninterrupted run). ``LoopState`` also carries the running return, success and
length of each env's current episode, so episode statistics continue across a resume.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

from genreward_jax.replay import flatten_tree


def warn(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr, flush=True)


def restore_envs(envs, obs: dict[str, np.ndarray], loop: LoopState) -> dict[str, np.ndarray]:
    """Rebuilds the simulator state by resetting and replaying actions (module docstring);
    returns the observation to continue from."""
    if len(set(loop.episodes.tolist())) != 1 or len({len(a) for a in loop.actions}) != 1:
        warn(
            "envs were not in lockstep at the checkpoint (episodes "
            f"{loop.episodes.tolist()}); continuing from fresh episodes, so this run "
            "is not bitwise identical to an uninterrupted one"
        )
        loop.restart(len(loop.actions))
        return obs
    for _ in range(int(loop.episodes[0]) - 1):
        obs = envs.reset()
    for step_actions in zip(*loop.actions, strict=True):
        obs = envs.step(np.stack(step_actions))
    mismatched = [k for k, v in loop.obs.items() if k in obs and not np.array_equal(v, obs[k])]
    if mismatched:
        warn(
            f"rebuilt env observation differs from the checkpoint in "
            f"{mismatched}; the resumed run is not bitwise identical"
        )
    # Entries the env does not make (goal-reward features and rewards) come from the
    # checkpoint, like the goal rewards' own window state.
    return {**loop.obs, **obs}


@dataclasses.dataclass
class LoopState:
    """Env-loop bookkeeping that makes the simulator reproducible and episode stats continuous.

    episodes[e]: episodes env e has started; actions[e]: actions applied since its current
    episode's first obs; running return/success/length of the current episode; obs: the
    observation at checkpoint time (to verify the rebuilt env).
    """

    episodes: np.ndarray
    actions: list[list[np.ndarray]]
    ret: np.ndarray
    success: np.ndarray
    length: np.ndarray
    act_dim: int
    obs: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    @classmethod
    def fresh(cls, num_envs: int, act_dim: int) -> LoopState:
        return cls(
            np.ones(num_envs, np.int64),
            [[] for _ in range(num_envs)],
            np.zeros(num_envs),
            np.zeros(num_envs, bool),
            np.zeros(num_envs, np.int64),
            act_dim,
        )

    def restart(self, num_envs: int) -> None:
        fresh = LoopState.fresh(num_envs, self.act_dim)
        self.__dict__.update(fresh.__dict__)

    def record(self, obs: Mapping[str, np.ndarray]) -> list[dict[str, float]]:
        """Accumulates the current obs; returns stats of episodes that end with it."""
        self.ret += np.where(obs["is_first"], 0.0, obs["reward"])
        self.success |= obs["success"].astype(bool)
        self.length += ~obs["is_first"]
        ended = []
        for env in np.flatnonzero(obs["is_last"]):
            ended.append(
                {
                    "return": float(self.ret[env]),
                    "success": float(self.success[env]),
                    "length": float(self.length[env]),
                }
            )
            self.ret[env], self.success[env], self.length[env] = 0.0, False, 0
        return ended

    def applied(self, new_obs: Mapping[str, np.ndarray], action: np.ndarray) -> None:
        """Updates the replay log after `action` led to `new_obs`."""
        for env, first in enumerate(new_obs["is_first"]):
            if first:
                self.episodes[env] += 1
                self.actions[env] = []
            else:
                self.actions[env].append(action[env])

    def arrays(self, obs: Mapping[str, np.ndarray]) -> dict[str, Any]:
        steps = max((len(a) for a in self.actions), default=0)
        padded = np.zeros((len(self.actions), steps, self.act_dim), np.float32)
        for env, actions in enumerate(self.actions):
            if actions:
                padded[env, : len(actions)] = np.stack(actions)
        return {
            "actions": padded,
            "ret": self.ret.astype(np.float64),
            "success": self.success.copy(),
            "length": self.length.copy(),
            "obs": {k: np.asarray(v) for k, v in flatten_tree(obs).items() if k != "extra_image"},
        }

    def meta(self) -> dict[str, Any]:
        return {
            "episodes": self.episodes.tolist(),
            "action_counts": [len(a) for a in self.actions],
            "act_dim": self.act_dim,
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, Any], meta: Mapping[str, Any]) -> LoopState:
        padded = np.asarray(arrays["actions"])
        actions = [
            [padded[env, t] for t in range(count)]
            for env, count in enumerate(meta["action_counts"])
        ]
        return cls(
            np.asarray(meta["episodes"], np.int64),
            actions,
            np.asarray(arrays["ret"]),
            np.asarray(arrays["success"]),
            np.asarray(arrays["length"]),
            int(meta["act_dim"]),
            {k: np.asarray(v) for k, v in arrays["obs"].items()},
        )
