"""Evaluation episodes: mean return, success rate and a video of one rollout.

Evaluation is stateless on purpose: every call builds fresh eval envs from the same configs (the
same seeds, hence the same object/goal placements every time, which makes curves comparable) and
derives its policy key from the caller's key, so an interrupted and resumed run evaluates exactly
like an uninterrupted one. Envs of a batch run in lockstep; each runs
ceil(episodes / num_envs) episodes and the first `episodes` finished episodes (in env order)
are reported.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

# policy(obs dict of [N, ...] arrays, carry, step index) -> (action [N, A], carry)
PolicyFn = Callable[[Mapping[str, np.ndarray], Any, int], tuple[np.ndarray, Any]]


@dataclasses.dataclass
class EvalResult:
    returns: list[float]  # of the reward the agent is trained on ('reward')
    dense_returns: list[float]  # of the environment's dense reward (the paper's reported return)
    successes: list[bool]  # success at any step of the episode (Meta-World's usual criterion)
    lengths: list[int]
    frames: np.ndarray | None  # uint8 [T, H, W, 3] of the first env's first episode, if recorded

    def metrics(self, prefix: str = "eval/") -> dict[str, float]:
        return {
            f"{prefix}return": float(np.mean(self.returns)),
            f"{prefix}return_std": float(np.std(self.returns)),
            f"{prefix}dense_return": float(np.mean(self.dense_returns)),
            f"{prefix}success": float(np.mean(self.successes)),
            f"{prefix}length": float(np.mean(self.lengths)),
            f"{prefix}episodes": float(len(self.returns)),
        }


def run_episodes(
    envs,
    policy: PolicyFn,
    carry: Any,
    episodes: int,
    num_envs: int,
    video_key: str | None = "image",
) -> EvalResult:
    """Runs `episodes` episodes on an already constructed env batch of `num_envs` envs.

    The env's auto-reset convention is used: the step after an `is_last` obs returns the first obs
    of the next episode, so the batch is reset once at the start only.
    """
    if episodes < 1:
        raise ValueError(f"eval episodes must be >= 1, got {episodes}")
    per_env = math.ceil(episodes / num_envs)
    done = np.zeros(num_envs, np.int64)
    ret = np.zeros(num_envs, np.float64)
    dense = np.zeros(num_envs, np.float64)
    success = np.zeros(num_envs, bool)
    length = np.zeros(num_envs, np.int64)
    finished: list[list[tuple[float, float, bool, int]]] = [[] for _ in range(num_envs)]
    frames: list[np.ndarray] = []
    record = video_key is not None
    obs = envs.reset()
    step = 0
    while (done < per_env).any():
        if record and video_key in obs and done[0] == 0:
            frames.append(np.asarray(obs[video_key][0]))
        ret += np.where(obs["is_first"], 0.0, obs["reward"])
        dense += np.where(obs["is_first"], 0.0, obs.get("dense_reward", obs["reward"]))
        success |= obs["success"].astype(bool)
        length += ~obs["is_first"]
        for env in np.flatnonzero(obs["is_last"]):
            if done[env] < per_env:
                finished[env].append(
                    (float(ret[env]), float(dense[env]), bool(success[env]), int(length[env]))
                )
            done[env] += 1
            ret[env], dense[env], success[env], length[env] = 0.0, 0.0, False, 0
        action, carry = policy(obs, carry, step)
        action = np.where(obs["is_last"][:, None], 0.0, action)
        obs = envs.step(action)
        step += 1
    ordered = [episode for env in range(num_envs) for episode in finished[env]][:episodes]
    returns, dense_returns, successes, lengths = (list(x) for x in zip(*ordered, strict=True))
    video = np.stack(frames) if frames else None
    return EvalResult(returns, dense_returns, successes, lengths, video)


def random_policy(act_dim: int, seed: int) -> PolicyFn:
    """Uniform actions in [-1, 1]; the baseline the learning benchmark compares against."""
    rng = np.random.default_rng(seed)

    def policy(obs, carry, step):
        del step
        n = len(obs["is_first"])
        return rng.uniform(-1.0, 1.0, (n, act_dim)).astype(np.float32), carry

    return policy


def evaluate(
    make_envs: Callable[[Sequence[Any]], Any],
    env_configs: Sequence[Any],
    policy: PolicyFn,
    carry: Any,
    episodes: int,
    video_key: str | None = "image",
) -> EvalResult:
    """Builds the eval env batch, runs the episodes and closes the envs."""
    envs = make_envs(list(env_configs))
    try:
        return run_episodes(envs, policy, carry, episodes, len(env_configs), video_key)
    finally:
        envs.close()
