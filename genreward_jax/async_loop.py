"""The overlapped training loop (``--loop=async``): acting and learning in two threads.

In the synchronous loop the accelerator waits while MuJoCo steps and renders, and the envs wait
while the agent trains. Here the main thread acts (policy, env step, reward model, replay) and a
learner thread trains. Threads, not processes: the replay is shared without copies, the envs stay
in the thread that made their GL contexts and that receives signals, and both sides spend their
time outside the GIL (XLA runs with it released, MuJoCo's step and render too).

The train ratio is enforced by a rate limiter over the two counters (``RateLimiter``):
  * the learner runs update u + 1 only while u < updates_due(env_steps): it never runs ahead of
    ``train_ratio`` replayed steps per env step;
  * the actor goes from env_steps to env_steps + N only once the learner has done
    updates_due(env_steps + N - actor_max_ahead): acting is never more than ``actor_max_ahead``
    env steps ahead of learning;
so a run does the same number of updates per env step as the synchronous loop, and at the end
the actor waits for the updates still owed.

The actor acts with a copy of the parameters the learner refreshes every ``policy_refresh``
updates (``policy_params.PolicyPublisher``; the train step donates its own state). Checkpoints
hold the learner between two updates (``RateLimiter.paused``), so the agent, the replay and the
loop state in a checkpoint belong together, and a resumed run restarts both threads from it. It
is not bitwise identical to an uninterrupted run: which parameters act at which step and which
steps a batch can sample depend on timing. The learner holds the replay's lock only to sample
and to write the batch's posteriors back (``Replay.write_context`` skips steps the actor has
overwritten since the sample).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

from genreward_jax.progress import PhaseClock


class RateLimiter:
    """The two threads' counters and the conditions each waits for (module docstring)."""

    def __init__(self, owed: Callable[[int], int], max_ahead: int, env_steps: int, updates: int):
        self._owed = owed
        self.max_ahead = max_ahead
        self.env_steps, self.updates = env_steps, updates
        self._cond = threading.Condition()
        self._stopped = self._paused = self._learning = False

    def wait_to_act(self, next_env_steps: int) -> bool:
        """Blocks the actor until learning is close enough behind to step to next_env_steps;
        False once stopped."""
        needed = self._owed(next_env_steps - self.max_ahead)
        with self._cond:
            self._cond.wait_for(lambda: self._stopped or self.updates >= needed)
            return not self._stopped

    def acted(self, env_steps: int) -> None:
        with self._cond:
            self.env_steps = env_steps
            self._cond.notify_all()

    def wait_for_learning(self, updates: int) -> bool:
        """Blocks until the learner has done ``updates`` updates; False once stopped."""
        with self._cond:
            self._cond.wait_for(lambda: self._stopped or self.updates >= updates)
            return not self._stopped

    def wait_to_learn(self) -> bool:
        """Blocks the learner until an update is owed and no checkpoint holds it; then marks it
        learning until ``learned``. False once stopped."""
        with self._cond:
            self._cond.wait_for(
                lambda: (
                    self._stopped
                    or (not self._paused and self.updates < self._owed(self.env_steps))
                )
            )
            self._learning = not self._stopped
            return self._learning

    def learned(self) -> None:
        with self._cond:
            self.updates += 1
            self._learning = False
            self._cond.notify_all()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Holds the learner between two updates for the duration (a consistent checkpoint)."""
        with self._cond:
            self._paused = True
            self._cond.wait_for(lambda: not self._learning)
        try:
            yield
        finally:
            with self._cond:
                self._paused = False
                self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()


class Learner(threading.Thread):
    """Trains whenever the rate limiter allows, publishing the policy's parameters every
    ``refresh`` updates. An exception stops the limiter and is kept for the actor to raise."""

    def __init__(self, trainer, run, limiter: RateLimiter, replay_lock, refresh: int):
        super().__init__(name="learner", daemon=True)
        self._trainer, self._run, self._limiter = trainer, run, limiter
        self._lock, self._refresh = replay_lock, refresh
        self.clock = PhaseClock()
        self.error: BaseException | None = None

    def run(self) -> None:
        run = self._run
        try:
            while True:
                with self.clock.phase("wait"):
                    if not self._limiter.wait_to_learn():
                        return
                try:
                    run.train_metrics.append(self._trainer.learn(run, self.clock, self._lock))
                    if run.updates % self._refresh == 0:
                        run.policy_state = run.publisher.publish(run.train_state)
                finally:
                    self._limiter.learned()
        except BaseException as error:  # handed to the actor, which raises it
            self.error = error
            self._limiter.stop()


def run_async(trainer, envs, run, owed: Callable[[int], int]) -> str:
    """Acts in this thread and learns in another until ``trainer.config.steps`` env steps, a
    signal, or an error in either thread; returns the run's status. ``owed(env_steps)`` is the
    number of updates the train ratio owes after that many env steps. The caller
    checkpoints."""
    cfg = trainer.config
    limiter = RateLimiter(owed, cfg.actor_max_ahead, run.env_steps, run.updates)
    replay_lock = threading.Lock()
    run.policy_state = run.publisher.publish(run.train_state)  # never the learner's buffers
    learner = Learner(trainer, run, limiter, replay_lock, cfg.policy_refresh)
    learner.start()
    status = "complete"
    try:
        while run.env_steps < cfg.steps:
            with run.clock.phase("wait"):
                if not limiter.wait_to_act(run.env_steps + trainer.num_envs):
                    break
            trainer.act(envs, run, replay_lock)
            limiter.acted(run.env_steps)
            if run.env_steps >= cfg.steps:
                _finish_learning(run, limiter, owed(run.env_steps))
            trainer.after_iteration(run, limiter.paused, learner.clock)
            if trainer.stop_signal is not None:
                status = f"interrupted by signal {trainer.stop_signal}"
                break
    finally:
        limiter.stop()
        learner.join()
    if learner.error is not None:
        raise learner.error
    return status


def _finish_learning(run: Any, limiter: RateLimiter, updates: int) -> None:
    """At the last env step: wait for the updates still owed, then act (evaluate) with the
    final parameters. A stopped learner (an error) leaves the last published copy in place."""
    with run.clock.phase("wait"):
        finished = limiter.wait_for_learning(updates)
    if finished:
        with limiter.paused():
            run.policy_state = run.publisher.publish(run.train_state)
