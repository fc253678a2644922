"""A batch of MetaWorldEnvs, one subprocess (and one GL context) each, stepped in parallel."""

from __future__ import annotations

import multiprocessing as mp
import traceback
from collections.abc import Sequence
from typing import Any

import numpy as np

from genreward_jax.envs.config import EnvConfig
from genreward_jax.envs.metaworld_env import ACT_DIM, MetaWorldEnv, Spec, observation_spec

# 'spawn' so a worker never inherits a forked copy of an initialised EGL/mujoco/JAX process.
DEFAULT_START_METHOD = "spawn"
_JOIN_TIMEOUT_S = 5.0


def _worker(conn: Any, config: EnvConfig) -> None:
    """Serve reset/step requests for one env until told to close or the parent goes away."""
    env = None
    try:
        env = MetaWorldEnv(config)
        conn.send(("ready", None))
        while True:
            command, payload = conn.recv()
            if command == "step":
                conn.send(("ok", env.step(*payload)))
            elif command == "reset":
                conn.send(("ok", env.reset(payload)))
            elif command == "close":
                break
            else:
                raise ValueError(f"Unknown command {command!r}.")
    except (EOFError, KeyboardInterrupt):
        pass
    except Exception:  # noqa: BLE001 - shipped to the parent, which raises it
        try:
            conn.send(("error", traceback.format_exc()))
        except (BrokenPipeError, OSError):
            pass
    finally:
        if env is not None:
            env.close()
        conn.close()


class EnvBatch:
    """N environments in subprocesses; observations stacked to [N, ...].

    `step(actions [N, 4], render_extra)` and `reset(render_extra)` return the keys of
    `obs_spec` stacked over envs, plus 'extra_image' uint8 [N, E, E, 3] whenever any env was
    asked for an extra frame (zeros for envs that were not). Each env auto-resets on its own
    (see MetaWorldEnv). A worker that fails makes the batch raise RuntimeError with the
    worker's traceback, and the batch is closed.

    Workers are started with 'spawn', which re-imports the main module: scripts that build an
    EnvBatch need the usual `if __name__ == "__main__":` guard (absl's app.run provides it).
    """

    act_dim = ACT_DIM

    def __init__(self, configs: Sequence[EnvConfig], start_method: str = DEFAULT_START_METHOD):
        configs = list(configs)
        _check_stackable(configs)
        self.configs = configs
        self.obs_spec: Spec = observation_spec(configs[0])
        self._extra_size = configs[0].extra_size
        self._closed = False
        self._conns: list[Any] = []
        self._processes: list[Any] = []
        context = mp.get_context(start_method)
        for index, config in enumerate(configs):
            parent_conn, child_conn = context.Pipe()
            process = context.Process(
                target=_worker,
                args=(child_conn, config),
                daemon=True,
                name=f"env-{index}-{config.task}-seed{config.seed}",
            )
            process.start()
            child_conn.close()
            self._conns.append(parent_conn)
            self._processes.append(process)
        self._receive_all()

    @property
    def num_envs(self) -> int:
        return len(self.configs)

    def reset(self, render_extra: bool | Sequence[bool] | np.ndarray = False) -> dict[str, Any]:
        """Reset every env: stacked first observations."""
        extra = self._extra_mask(render_extra)
        for conn, flag in zip(self._conns, extra, strict=True):
            self._send(conn, ("reset", bool(flag)))
        return self._stack(self._receive_all(), extra)

    def step(
        self, actions: np.ndarray, render_extra: bool | Sequence[bool] | np.ndarray = False
    ) -> dict[str, Any]:
        """Step every env with its row of `actions` [N, 4]."""
        actions = np.asarray(actions, dtype=np.float32)
        if actions.shape != (self.num_envs, ACT_DIM):
            raise ValueError(
                f"actions must have shape ({self.num_envs}, {ACT_DIM}), got {actions.shape}."
            )
        extra = self._extra_mask(render_extra)
        for conn, action, flag in zip(self._conns, actions, extra, strict=True):
            self._send(conn, ("step", (action, bool(flag))))
        return self._stack(self._receive_all(), extra)

    def close(self) -> None:
        """Stop all workers; safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        for conn in self._conns:
            try:
                conn.send(("close", None))
            except (BrokenPipeError, OSError):
                pass
        for process in self._processes:
            process.join(_JOIN_TIMEOUT_S)
            if process.is_alive():
                process.terminate()
                process.join(_JOIN_TIMEOUT_S)
        for conn in self._conns:
            conn.close()

    def __enter__(self) -> EnvBatch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_processes", None):
            self.close()

    def _extra_mask(self, render_extra: bool | Sequence[bool] | np.ndarray) -> np.ndarray:
        if self._closed:
            raise RuntimeError("This EnvBatch is closed.")
        mask = np.asarray(render_extra, dtype=bool)
        if mask.ndim == 0:
            mask = np.full(self.num_envs, bool(mask))
        if mask.shape != (self.num_envs,):
            raise ValueError(
                f"render_extra must be a bool or bool[{self.num_envs}], got shape {mask.shape}."
            )
        if mask.any() and self._extra_size is None:
            raise ValueError("render_extra needs EnvConfig.extra_size to be set.")
        return mask

    def _send(self, conn: Any, message: tuple[str, Any]) -> None:
        try:
            conn.send(message)
        except (BrokenPipeError, OSError):
            self._fail(self._conns.index(conn), "")

    def _receive_all(self) -> list[Any]:
        results = []
        for index, conn in enumerate(self._conns):
            try:
                status, payload = conn.recv()
            except (EOFError, OSError):
                self._fail(index, "")
            if status == "error":
                self._fail(index, payload)
            results.append(payload)
        return results

    def _fail(self, index: int, worker_traceback: str) -> None:
        process = self._processes[index]
        process.join(_JOIN_TIMEOUT_S)
        config = self.configs[index]
        what = (
            f"Env worker {index} ({config.task}, seed {config.seed}) failed"
            if worker_traceback
            else f"Env worker {index} ({config.task}, seed {config.seed}) died "
            f"(exit code {process.exitcode})"
        )
        self.close()
        message = f"{what}; the batch is closed."
        if worker_traceback:
            message += f"\nWorker traceback:\n{worker_traceback}"
        raise RuntimeError(message)

    def _stack(self, observations: list[dict[str, Any]], extra: np.ndarray) -> dict[str, Any]:
        stacked = {key: np.stack([obs[key] for obs in observations]) for key in self.obs_spec}
        if extra.any():
            size = self._extra_size
            frames = np.zeros((self.num_envs, size, size, 3), dtype=np.uint8)
            for index, obs in enumerate(observations):
                if extra[index]:
                    frames[index] = obs["extra_image"]
            stacked["extra_image"] = frames
        return stacked


def _check_stackable(configs: list[EnvConfig]) -> None:
    if not configs:
        raise ValueError("EnvBatch needs at least one EnvConfig.")
    for config in configs:
        if not isinstance(config, EnvConfig):
            raise ValueError(f"EnvBatch takes EnvConfig objects, got {type(config).__name__}.")
    for field in ("size", "extra_size", "proprio", "render"):
        values = {getattr(config, field) for config in configs}
        if len(values) > 1:
            raise ValueError(f"All envs in a batch must share {field} to stack; got {values}.")
