"""One Meta-World v3 task as a DreamerV3-style environment (dict observations, auto-reset)."""

from __future__ import annotations

from typing import Any

import mujoco
import numpy as np
from metaworld.env_dict import ML1_ARGS_KWARGS

from genreward_jax.envs.config import EnvConfig
from genreward_jax.envs.rendering import FrameRenderer, use_fast_rendering
from genreward_jax.envs.tasks import env_class

ACT_DIM = 4
STATE_DIM = 39
_PLACEMENT_STREAM = 7  # seeds the choice among config.placements apart from the sim's own RNG

Spec = dict[str, tuple[tuple[int, ...], np.dtype]]


def observation_spec(config: EnvConfig) -> Spec:
    """Keys present in every observation of an env with this config: name -> (shape, dtype).

    'extra_image' is deliberately absent: it appears only in observations that asked for it.
    """
    spec: Spec = {}
    if config.render:
        spec["image"] = ((config.size, config.size, 3), np.dtype(np.uint8))
    if config.proprio:
        spec["state"] = ((STATE_DIM,), np.dtype(np.float32))
    for key in ("reward", "dense_reward"):
        spec[key] = ((), np.dtype(np.float32))
    for key in ("is_first", "is_last", "is_terminal", "success"):
        spec[key] = ((), np.dtype(bool))
    if config.placements:
        spec["placement"] = ((), np.dtype(np.int32))
    return spec


class MetaWorldEnv:
    """Meta-World task with pixel observations, seeded per-episode randomisation and a time limit.

    Observations are dicts (see `observation_spec`). Follows the DreamerV3 auto-reset convention:
    after an observation with is_last, the next `step` ignores its action and returns the first
    observation of a new episode (is_first=True, reward 0). Meta-World never terminates, so
    is_terminal is always False; is_last marks the time limit.

    Object and goal positions are drawn from a generator seeded once with `config.seed`, afresh
    at every reset, so the sequence of episodes is the same for the same seed; with
    `config.placements` they come from that list instead (see EnvConfig).
    """

    act_dim = ACT_DIM

    def __init__(self, config: EnvConfig) -> None:
        self.config = config
        self._sim = _seeded_task_env(config)
        self._renderer: FrameRenderer | None = None
        self._extra_renderer: FrameRenderer | None = None
        if config.render:
            if not config.full_quality:
                use_fast_rendering(self._sim.model)
            try:
                self._renderer = self._make_renderer(config.size)
            except Exception:
                self._sim.close()
                raise
        self._placement_rng = np.random.default_rng([config.seed, _PLACEMENT_STREAM])
        self._placement_index = 0
        self._step_count = 0
        self._needs_reset = True
        self._closed = False

    @property
    def obs_spec(self) -> Spec:
        return observation_spec(self.config)

    @property
    def step_count(self) -> int:
        """Agent steps taken in the current episode."""
        return self._step_count

    @property
    def sim(self) -> Any:
        """The underlying Meta-World env (model, data, positions); step it only through `step`."""
        return self._sim

    @property
    def placement(self) -> np.ndarray:
        """The current episode's object/goal placement (Meta-World's random vector of the task);
        a goal file records it so training can start episodes where its video starts."""
        return np.asarray(self._sim._last_rand_vec, np.float64).copy()

    @property
    def renderer(self) -> FrameRenderer | None:
        """The policy-frame renderer (None when config.render is False)."""
        return self._renderer

    def reset(self, render_extra: bool = False) -> dict[str, Any]:
        """Start a new episode with freshly drawn object and goal positions."""
        self._check_open()
        placements = self.config.placements
        if placements:
            if len(placements) > 1:
                self._placement_index = int(self._placement_rng.integers(len(placements)))
            vector = np.asarray(placements[self._placement_index], np.float64)
            if vector.shape != self._sim._random_reset_space.shape:
                raise ValueError(
                    f"placement has {vector.size} values, {self.config.task} needs "
                    f"{self._sim._random_reset_space.shape[0]}"
                )
            self._sim._last_rand_vec = vector
            self._sim._freeze_rand_vec = True
        state, _ = self._sim.reset()
        # The reset moves sites and bodies after the last forward pass; recompute derived
        # positions so the first frame shows the goal marker where it now is.
        mujoco.mj_forward(self._sim.model, self._sim.data)
        self._step_count = 0
        self._needs_reset = False
        return self._observation(
            state,
            reward=0.0,
            dense=0.0,
            is_first=True,
            is_last=False,
            success=False,
            render_extra=render_extra,
        )

    def step(self, action: np.ndarray, render_extra: bool = False) -> dict[str, Any]:
        """Apply `action` float[4] (clipped to [-1, 1]) for `action_repeat` physics steps.

        reward/dense_reward sum the repeated steps; success is True if any of them succeeded.
        render_extra adds obs['extra_image'] uint8 [extra_size, extra_size, 3].
        """
        self._check_open()
        if self._needs_reset:
            return self.reset(render_extra)
        action = _checked_action(action)
        dense = 0.0
        success = False
        for _ in range(self.config.action_repeat):
            state, reward, _, _, info = self._sim.step(action)
            dense += float(reward)
            success = success or bool(info["success"])
        self._step_count += 1
        is_last = self._step_count >= self.config.time_limit
        self._needs_reset = is_last
        return self._observation(
            state,
            reward=self._scheduled_reward(dense),
            dense=dense,
            is_first=False,
            is_last=is_last,
            success=success,
            render_extra=render_extra,
        )

    def render(self) -> np.ndarray:
        """The current policy frame uint8 [size, size, 3]."""
        self._check_open()
        if self._renderer is None:
            raise RuntimeError("This env was built with render=False.")
        return self._renderer.render()

    def close(self) -> None:
        """Free GL contexts and the simulation; safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        for renderer in (self._renderer, self._extra_renderer):
            if renderer is not None:
                renderer.close()
        self._renderer = self._extra_renderer = None
        self._sim.close()

    def __enter__(self) -> MetaWorldEnv:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _scheduled_reward(self, dense: float) -> float:
        if self.config.reward_mode == "dense":
            return dense
        return dense if self._step_count % self.config.sparse_interval == 0 else 0.0

    def _observation(
        self,
        state: np.ndarray,
        *,
        reward: float,
        dense: float,
        is_first: bool,
        is_last: bool,
        success: bool,
        render_extra: bool,
    ) -> dict[str, Any]:
        obs: dict[str, Any] = {}
        if self._renderer is not None:
            obs["image"] = self._renderer.render()
        if self.config.proprio:
            obs["state"] = np.asarray(state, dtype=np.float32)
        obs["reward"] = np.float32(reward)
        obs["dense_reward"] = np.float32(dense)
        obs["is_first"] = np.bool_(is_first)
        obs["is_last"] = np.bool_(is_last)
        obs["is_terminal"] = np.bool_(False)
        obs["success"] = np.bool_(success)
        if self.config.placements:
            obs["placement"] = np.int32(self._placement_index)
        if render_extra:
            obs["extra_image"] = self._render_extra()
        return obs

    def _render_extra(self) -> np.ndarray:
        if self.config.extra_size is None:
            raise ValueError("render_extra=True needs EnvConfig.extra_size to be set.")
        if self._extra_renderer is None:
            # Created on first use: a second GL context costs ~0.5 s and memory at 480x480.
            self._extra_renderer = self._make_renderer(self.config.extra_size)
        return self._extra_renderer.render()

    def _make_renderer(self, size: int) -> FrameRenderer:
        return FrameRenderer(
            self._sim.model, self._sim.data, self.config.camera, size, self.config.full_quality
        )

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("This MetaWorldEnv is closed.")


def _seeded_task_env(config: EnvConfig) -> Any:
    """The raw Meta-World env with the goal observable and seeded re-randomisation each reset.

    Mirrors what metaworld.MT1 does when it builds its task list (goal observable, random vector
    unfrozen), except that positions are drawn from the env's own seeded generator at every
    reset instead of from a fixed list of 50 pre-sampled tasks.
    """
    sim = env_class(config.task)()
    sim._partially_observable = False
    sim.__dict__.pop("sawyer_observation_space", None)  # cached for the old observability
    kwargs = {k: v for k, v in ML1_ARGS_KWARGS[config.task]["kwargs"].items() if k != "task_id"}
    sim._set_task_inner(**kwargs)
    sim._set_task_called = True
    sim._freeze_rand_vec = False
    sim.seeded_rand_vec = True
    sim.seed(config.seed)
    # Meta-World refuses to step past max_path_length; the time limit is ours to enforce.
    sim.max_path_length = config.time_limit * config.action_repeat
    return sim


def _checked_action(action: np.ndarray) -> np.ndarray:
    action = np.asarray(action, dtype=np.float32)
    if action.shape != (ACT_DIM,):
        raise ValueError(f"Action must have shape ({ACT_DIM},), got {action.shape}.")
    if not np.all(np.isfinite(action)):
        raise ValueError(f"Action must be finite, got {action}.")
    return np.clip(action, -1.0, 1.0)
