"""Plain configuration of one environment, validated on construction."""

from __future__ import annotations

import dataclasses
import numbers

from genreward_jax.envs.rendering import CAMERAS
from genreward_jax.envs.tasks import resolve_task

REWARD_MODES: tuple[str, ...] = ("dense", "sparse")
MAX_SEED = 2**32 - 1


@dataclasses.dataclass(frozen=True)
class EnvConfig:
    """One Meta-World environment.

    task: any Meta-World v3 name ('pick-place' or 'pick-place-v3'); stored canonical.
    seed: drives object/goal positions of every episode (deterministic per seed).
    camera: one of CAMERAS; size: policy frame side in pixels ([size, size, 3]).
    action_repeat: physics steps per agent step (rewards summed).
    time_limit: agent steps per episode (after action repeat).
    reward_mode: 'dense' (environment reward) or 'sparse' (the environment reward of the step
      that closes each `sparse_interval`-step window, zero otherwise).
    proprio: include the 39-d Meta-World state as obs['state'].
    extra_size: side of the optional second frame (obs['extra_image']), rendered only on request.
    full_quality: keep multisampling, shadows and reflections (slow on CPU).
    render: False skips the renderer entirely (no obs['image']): scripted rollouts, benchmarks.
    placements: object/goal placements (Meta-World's random vector of the task, as recorded in a
      goal file) to draw from at each reset instead of fresh random ones. Empty: random placement
      every episode (Meta-World's and the release's setting). One entry: every episode starts
      from it. Several (a goal bank): each reset picks one with the env's seeded generator and
      reports its index as obs['placement'], so the episode's rewards can use its own goal.
    """

    task: str
    seed: int = 0
    camera: str = "corner"
    size: int = 64
    action_repeat: int = 1
    time_limit: int = 256
    reward_mode: str = "dense"
    sparse_interval: int = 64
    proprio: bool = True
    extra_size: int | None = None
    full_quality: bool = False
    render: bool = True
    placements: tuple[tuple[float, ...], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "task", resolve_task(self.task))
        object.__setattr__(self, "seed", _checked_int("seed", self.seed, low=0, high=MAX_SEED))
        for name in ("size", "action_repeat", "time_limit", "sparse_interval"):
            object.__setattr__(self, name, _checked_int(name, getattr(self, name), low=1))
        if self.extra_size is not None:
            object.__setattr__(self, "extra_size", _checked_int("extra_size", self.extra_size, 1))
        for name in ("proprio", "full_quality", "render"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}.")
        if self.camera not in CAMERAS:
            raise ValueError(f"Unknown camera {self.camera!r}. Valid cameras: {', '.join(CAMERAS)}")
        if self.reward_mode not in REWARD_MODES:
            raise ValueError(
                f"Unknown reward_mode {self.reward_mode!r}. Valid modes: {', '.join(REWARD_MODES)}"
            )
        placements = tuple(tuple(float(v) for v in p) for p in self.placements)
        if len({len(p) for p in placements}) > 1 or any(not p for p in placements):
            raise ValueError(
                f"placements must be non-empty vectors of one length, got {self.placements!r}."
            )
        object.__setattr__(self, "placements", placements)
        if not self.render and self.extra_size is not None:
            raise ValueError("extra_size needs render=True (the extra frame is a second render).")


def _checked_int(name: str, value: object, low: int, high: int | None = None) -> int:
    """Plain int (numpy integers accepted, so configs pickle and compare cleanly)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an int, got {value!r} ({type(value).__name__}).")
    value = int(value)
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {bound}, got {value}.")
    return value
