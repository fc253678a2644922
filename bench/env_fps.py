"""Environment throughput: agent steps/s with and without rendering, in-process and batched.

Run from the repository root:  .venv/bin/python -m bench.env_fps [--seconds=5]
Prints a table and writes JSON (default bench/results/env_fps.json).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time

import numpy as np
from absl import app, flags

from genreward_jax.atomic import atomic_write_json  # noqa: E402
from genreward_jax.envs import EnvBatch, EnvConfig, MetaWorldEnv

_SECONDS = flags.DEFINE_float(
    "seconds", 5.0, "Timed duration per case (whole agent steps, at least 10).", lower_bound=0.0
)
_WARMUP = flags.DEFINE_integer("warmup", 20, "Untimed steps before each case.", lower_bound=0)
_BENCH_TASK = flags.DEFINE_string("bench_task", "pick-place", "Meta-World task to step.")
_OUTPUT = flags.DEFINE_string("output", "bench/results/env_fps.json", "Where to write JSON.")


@dataclasses.dataclass(frozen=True)
class Case:
    mode: str  # 'single' (in-process MetaWorldEnv) or 'batch' (EnvBatch subprocesses)
    num_envs: int
    render: bool
    size: int
    extra_size: int | None = None  # extra frame rendered at every step when set
    full_quality: bool = False

    @property
    def label(self) -> str:
        frames = f"{self.size}x{self.size}" if self.render else "no render"
        if self.extra_size:
            frames += f" + extra {self.extra_size}"
        if self.full_quality:
            frames += " (full quality)"
        return f"{self.mode} x{self.num_envs}, {frames}"


CASES = [
    Case("single", 1, render=False, size=64),
    Case("single", 1, render=True, size=64),
    Case("single", 1, render=True, size=128),
    Case("single", 1, render=True, size=64, full_quality=True),
    Case("single", 1, render=True, size=480),
    Case("single", 1, render=True, size=64, extra_size=480),
    Case("batch", 1, render=False, size=64),
    Case("batch", 2, render=False, size=64),
    Case("batch", 1, render=True, size=64),
    Case("batch", 2, render=True, size=64),
    Case("batch", 1, render=True, size=128),
    Case("batch", 2, render=True, size=128),
]


def _config(case: Case, seed: int) -> EnvConfig:
    return EnvConfig(
        _BENCH_TASK.value,
        seed=seed,
        size=case.size,
        render=case.render,
        extra_size=case.extra_size,
        full_quality=case.full_quality,
    )


def _measure(case: Case, actions: np.ndarray) -> tuple[float, int]:
    """(env steps per second summed over envs, agent steps timed); episode resets included."""
    extra = case.extra_size is not None
    if case.mode == "single":
        env = MetaWorldEnv(_config(case, seed=0))
        step = lambda a: env.step(a[0], render_extra=extra)  # noqa: E731
        env.reset()
    else:
        env = EnvBatch([_config(case, seed=i) for i in range(case.num_envs)])
        step = lambda a: env.step(a, render_extra=extra)  # noqa: E731
        env.reset()
    try:
        for t in range(_WARMUP.value):
            step(actions[t % len(actions), : case.num_envs])
        steps = 0
        start = time.perf_counter()
        while steps < 10 or time.perf_counter() - start < _SECONDS.value:
            step(actions[steps % len(actions), : case.num_envs])
            steps += 1
        elapsed = time.perf_counter() - start
    finally:
        env.close()
    return case.num_envs * steps / elapsed, steps


def main(argv: list[str]) -> None:
    del argv
    actions = np.random.default_rng(0).uniform(-1, 1, (512, 2, 4)).astype(np.float32)
    results = []
    print(f"{'case':<42} {'env steps/s':>12}")
    for case in CASES:
        rate, steps = _measure(case, actions)
        results.append(
            {**dataclasses.asdict(case), "label": case.label, "steps_per_s": rate, "steps": steps}
        )
        print(f"{case.label:<42} {rate:>12.1f}", flush=True)
    atomic_write_json(
        _OUTPUT.value,
        {
            "benchmark": "env_fps",
            "task": _BENCH_TASK.value,
            "seconds_per_case": _SECONDS.value,
            "cpu_count": os.cpu_count(),
            "load_average_at_end": os.getloadavg(),
            "platform": platform.platform(),
            "mujoco_gl": os.environ.get("MUJOCO_GL"),
            "results": results,
        },
    )
    print(f"wrote {_OUTPUT.value}")


if __name__ == "__main__":
    app.run(main)
