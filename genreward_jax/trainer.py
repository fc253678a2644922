"""DreamerV3 training loop: env batch, prefill, train ratio, evaluation, checkpoints, resume.

Why it is built this way:
- The start of training is the official one by default: no random-action prefill, the agent
  acts with its initial policy from the first step, and training starts once replay holds
  `batch_size * batch_length` steps. `prefill=N` keeps the older random-action start as an
  option; its steps still run the policy's filter, so replay stores real posteriors as context.
- Everything random is derived from counters, not carried state, except the replay sampler
  (whose numpy Generator state is checkpointed): prefill actions from
  `default_rng([seed, env_step])`, policy keys `fold_in(policy_key, env_step)`, train keys
  `fold_in(train_key, update)`, eval keys `fold_in(eval_key, eval_index)`. Together with a
  single-threaded loop this makes a run on CPU deterministic for a seed, and makes resuming exact.
- Counters: `env_steps` counts steps summed over all envs (N per loop iteration, like the
  official `step`). Train ratio = replayed steps per env step: with
  `start = max(prefill, batch_size * batch_length)`,
  `updates = 1 + floor((env_steps - start) * train_ratio / (batch_size * batch_length))` once
  `env_steps >= start` (the first update as soon as replay is full enough, as the official
  Ratio grants on its first call).
- Exact resume needs the simulator where it was: ``resume.py`` records and replays it.
- SIGTERM/SIGINT set a flag; the loop finishes the current iteration, writes a checkpoint and
  returns cleanly. A kill -9 loses the work since the last periodic checkpoint; rerunning the same
  command resumes from it and, by the two points above, retraces the lost steps exactly.
- Evaluation is stateless (fresh eval envs with fixed seeds each time, see evaluation.py).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import math
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from genreward_jax import curves, evaluation, media, metrics_log
from genreward_jax.async_loop import run_async
from genreward_jax.checkpoint import Checkpointer
from genreward_jax.policy_params import PolicyPublisher, parse_policy_device, resolve_policy_device
from genreward_jax.progress import PhaseClock, Progress
from genreward_jax.replay import Replay, ReplayConfig
from genreward_jax.replay_store import REPLAY_DIR, ReplayStore
from genreward_jax.resume import LoopState, restore_envs
from genreward_jax.rewards.interface import RewardModel
from genreward_jax.sharding import DataParallel

FLAG_KEYS = ("reward", "is_first", "is_last", "is_terminal")
CONTEXT_KEYS = ("deter", "stoch")
EVAL_MODES = ("mean", "sample")
LOOPS = ("auto", "sync", "async")


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
    """Loop hyperparameters; step counts are env steps summed over all training envs."""

    logdir: str
    steps: int = 1_000_000
    train_ratio: float = 32.0
    batch_size: int = 16
    batch_length: int = 64  # T; sampled sequences have T + 1 steps (first is replay context)
    replay_capacity: int = 5_000_000
    replay_online: bool = True
    compact_context: bool = True  # replay context as float16 deter + uint8 one-hot stoch
    prefill: int = 0  # random-action env steps; 0 is the official start (see module docstring)
    obs_keys: tuple[str, ...] = ("image",)
    eval_every: int = 10_000
    eval_episodes: int = 10
    eval_envs: int = 1
    # Eval actions: the policy's mean (deterministic, the default) or samples as in training
    # (what the official agent's evaluation does: its policy always samples).
    eval_mode: str = "mean"
    video: bool = True
    checkpoint_every: int = 10_000
    keep_checkpoints: int = 3
    log_every: int = 1000
    seed: int = 0
    train_devices: int = 1  # data-parallel train step over this many devices (0: all)
    # Where the policy acts: "" with the train step's parameters (in the sync loop the same
    # arrays), "cpu" the host, an integer a local device's index (a copy after every refresh).
    policy_device: str = ""
    # sync: act, then train, in one thread (exact resume); async: acting and learning overlap
    # in two threads (async_loop.py); auto: sync on CPU, async on GPU/TPU.
    loop: str = "auto"
    actor_max_ahead: int = 64  # async: env steps acting may run past what learning has done
    policy_refresh: int = 1  # async: updates between copies of the parameters to the actor

    def __post_init__(self) -> None:
        positive = (
            "steps",
            "batch_size",
            "batch_length",
            "replay_capacity",
            "eval_every",
            "eval_episodes",
            "eval_envs",
            "checkpoint_every",
            "keep_checkpoints",
            "log_every",
            "actor_max_ahead",
            "policy_refresh",
        )
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"--{name} must be a positive integer, got {value!r}")
        if not self.train_ratio > 0 or not math.isfinite(self.train_ratio):
            raise ValueError(f"--train_ratio must be a positive number, got {self.train_ratio!r}")
        if self.eval_mode not in EVAL_MODES:
            raise ValueError(f"--eval_mode must be one of {EVAL_MODES}, got {self.eval_mode!r}")
        if self.prefill < 0:
            raise ValueError(f"--prefill must be >= 0 env steps, got {self.prefill}")
        if not self.obs_keys:
            raise ValueError("--obs_keys must name at least one observation key (image, state)")
        if not self.logdir:
            raise ValueError("--logdir is required")
        if self.seed < 0:
            raise ValueError(f"--seed must be >= 0, got {self.seed}")
        if self.train_devices < 0:
            raise ValueError(f"--train_devices must be >= 0 (0: all), got {self.train_devices}")
        if self.loop not in LOOPS:
            raise ValueError(f"--loop must be one of {LOOPS}, got {self.loop!r}")
        parse_policy_device(self.policy_device)


def resolve_loop(loop: str) -> str:
    """--loop=auto: the synchronous loop on CPU (where acting and learning share the same
    cores, and where runs resume exactly), the overlapped one on an accelerator."""
    if loop != "auto":
        return loop
    return "sync" if jax.default_backend() == "cpu" else "async"


@dataclasses.dataclass
class RunState:
    """The mutable state of one run, shared by the sync and async loops. In the async loop the
    actor thread owns the env side (obs, carry, loop, episode metrics, env_steps) and the
    learner thread the train side (train_state, updates, train metrics); the replay is shared
    under a lock, and the actor acts with ``policy_state``, a copy the learner refreshes."""

    agent: Any
    act_dim: int
    policy_key: jax.Array
    train_key: jax.Array
    eval_key: jax.Array
    train_state: Any
    carry: dict[str, jax.Array]
    obs: dict[str, np.ndarray]
    loop: LoopState
    replay: Replay
    step_keys: tuple[str, ...]
    checkpointer: Checkpointer
    store: ReplayStore
    # The replay chunks each checkpoint step is made of.
    manifests: dict[int, dict] = dataclasses.field(default_factory=dict)
    policy_state: Any = None
    publisher: PolicyPublisher | None = None
    parallel: DataParallel | None = None
    logger: metrics_log.MetricsLogger | None = None
    progress: Progress | None = None
    clock: PhaseClock = dataclasses.field(default_factory=PhaseClock)
    env_steps: int = 0
    updates: int = 0
    evals: int = 0
    train_metrics: collections.deque = dataclasses.field(default_factory=collections.deque)
    episode_metrics: list[dict] = dataclasses.field(default_factory=list)
    last_eval: dict[str, float] = dataclasses.field(default_factory=dict)

    def drain_train_metrics(self) -> list[dict]:
        """The train steps' metrics since the last call (the deque is safe across threads)."""
        drained = []
        while self.train_metrics:
            drained.append(self.train_metrics.popleft())
        return drained


class Trainer:
    """One training run in `config.logdir`; `run()` starts fresh or resumes the latest checkpoint.

    make_envs(list[EnvConfig]) -> env batch (default `EnvBatch`); agent_factory(obs_spec,
    act_dim) -> Agent. Both are injectable so tests and benchmarks can reuse the loop.
    Training envs render only when the agent encodes 'image' or the reward model needs frames;
    eval envs also render for videos. stdout=False silences progress lines (warnings still go to
    stderr).

    reward_model (a `genreward_jax.rewards.interface.RewardModel`, optional: GenReward's
    `GoalRewards`, a baseline's) turns each env step into its replay entries and the reward the
    agent learns, and asks for the frames it needs; without one the agent learns the env reward.
    """

    def __init__(
        self,
        config: TrainerConfig,
        agent_factory: Callable[[dict, int], Any],
        env_configs: Sequence[Any],
        eval_env_configs: Sequence[Any],
        make_envs: Callable[[list], Any] | None = None,
        stdout=None,
        reward_model: RewardModel | None = None,
    ):
        if not env_configs:
            raise ValueError("need at least one training env")
        self.config = config
        self.agent_factory = agent_factory
        self.reward_model = reward_model
        needs_image = "image" in config.obs_keys or (
            reward_model is not None and reward_model.needs_frames
        )
        extra_size = reward_model.extra_size if reward_model is not None else None
        self.env_configs = [
            dataclasses.replace(c, render=needs_image, extra_size=extra_size) for c in env_configs
        ]
        self.eval_env_configs = [
            dataclasses.replace(c, render=needs_image or config.video)
            for c in eval_env_configs[: config.eval_envs]
        ]
        if not self.eval_env_configs:
            raise ValueError("need at least one eval env")
        self.num_envs = len(self.env_configs)
        # Resolved here so that a bad device index fails before any env starts.
        self._policy_device = resolve_policy_device(config.policy_device)
        self._loop = resolve_loop(config.loop)
        if self._loop == "async" and config.actor_max_ahead < self.num_envs:
            raise ValueError(
                f"--actor_max_ahead={config.actor_max_ahead} must be at least --num_envs="
                f"{self.num_envs}: one loop iteration steps every env"
            )
        self._make_envs = make_envs or _default_env_batch
        self._stdout = stdout
        self._stop_signal: int | None = None

    # ------------------------------------------------------------------ setup
    def _obs_spec(self, obs: Mapping[str, np.ndarray]) -> dict[str, tuple[tuple[int, ...], Any]]:
        return observation_spec(obs, self.config.obs_keys)

    def _replay_spec(self, obs, obs_spec, act_dim, carry) -> tuple[dict, dict]:
        step_spec = dict(obs_spec)
        step_spec.update(
            reward=((), np.float32),
            is_first=((), bool),
            is_last=((), bool),
            is_terminal=((), bool),
            action=((act_dim,), np.float32),
        )
        if self.reward_model is not None:
            for key, spec in self.reward_model.replay_entries(obs).items():
                step_spec.setdefault(key, spec)
        compact = self.config.compact_context
        dtypes = {
            "deter": np.float16 if compact else np.float32,
            "stoch": np.uint8 if compact else np.float32,
        }
        context_spec = {k: (tuple(np.shape(carry[k])[1:]), dtypes[k]) for k in CONTEXT_KEYS}
        return step_spec, context_spec

    def _handle_signal(self, signum, frame) -> None:
        del frame
        self._stop_signal = signum

    @property
    def stop_signal(self) -> int | None:
        """The SIGTERM/SIGINT received during the run, if any (the loop then checkpoints and
        returns)."""
        return self._stop_signal

    # ------------------------------------------------------------------ main loop
    def run(self) -> dict[str, Any]:
        """Trains until `config.steps`; returns {'status', 'env_steps', 'updates', 'eval'}."""
        cfg = self.config
        os.makedirs(cfg.logdir, exist_ok=True)
        previous = {
            s: signal.signal(s, self._handle_signal) for s in (signal.SIGTERM, signal.SIGINT)
        }
        envs = self._make_envs(self.env_configs)
        try:
            return self._run(envs)
        finally:
            envs.close()
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _step_keys(self, obs) -> tuple[str, ...]:
        """Keys of an env step that go into replay besides action and context."""
        keys = (*self.config.obs_keys, *FLAG_KEYS)
        if self.reward_model is not None:
            keys += tuple(k for k in self.reward_model.replay_entries(obs) if k not in keys)
        return keys

    def _reset(self, envs) -> dict[str, np.ndarray]:
        if self.reward_model is None:
            return envs.reset()
        mask = self.reward_model.render_mask(np.ones(self.num_envs, bool))
        return self.reward_model.process(envs.reset(render_extra=mask))

    def _step(self, envs, action, obs, clock: PhaseClock) -> dict[str, np.ndarray]:
        if self.reward_model is None:
            with clock.phase("env"):
                return envs.step(action)
        mask = self.reward_model.render_mask(obs["is_last"])
        with clock.phase("env"):
            stepped = envs.step(action, render_extra=mask)
        with clock.phase("reward"):
            return self.reward_model.process(stepped)

    def _start(self, envs) -> RunState:
        """Builds the agent, replay and checkpointer of this run and, when the run directory
        holds a checkpoint, restores everything from it."""
        cfg = self.config
        obs = self._reset(envs)
        obs_spec = self._obs_spec(obs)
        act_dim = _act_dim(envs)
        agent = self.agent_factory(obs_spec, act_dim)
        init_key, policy_key, train_key, eval_key = run_keys(cfg.seed)
        train_state = agent.init(init_key)
        carry = agent.initial_carry(self.num_envs)
        step_spec, context_spec = self._replay_spec(obs, obs_spec, act_dim, carry)
        replay = Replay(
            ReplayConfig(
                cfg.replay_capacity,
                self.num_envs,
                cfg.batch_length + 1,
                cfg.replay_online,
                cfg.seed,
            ),
            step_spec,
            context_spec,
        )
        run = RunState(
            agent=agent,
            act_dim=act_dim,
            policy_key=policy_key,
            train_key=train_key,
            eval_key=eval_key,
            train_state=train_state,
            carry=carry,
            obs=obs,
            loop=LoopState.fresh(self.num_envs, act_dim),
            replay=replay,
            step_keys=self._step_keys(obs),
            checkpointer=Checkpointer(
                os.path.join(cfg.logdir, "checkpoints"), cfg.keep_checkpoints
            ),
            store=ReplayStore(os.path.join(cfg.logdir, REPLAY_DIR)),
        )
        resume_step = run.checkpointer.latest_step()
        if resume_step is not None:
            template = {"agent": train_state, "carry": carry}
            state, arrays, meta = run.checkpointer.restore(resume_step, template)
            run.train_state, run.carry = state["agent"], state["carry"]
            if "replay_chunks" in meta:
                replay.load_meta(meta["replay"])
                run.store.load(replay, meta["replay_chunks"])
                run.manifests[resume_step] = meta["replay_chunks"]
            else:  # a checkpoint from before incremental replay: the replay in its arrays
                replay.load_state_dict({**arrays["replay"], "meta": meta["replay"]})
            if self.reward_model is not None:
                self.reward_model.load_state_dict(arrays["reward_model"])
            run.loop = LoopState.from_arrays(arrays["loop"], meta["loop"])
            run.env_steps, run.updates = meta["env_steps"], meta["updates"]
            run.evals = meta["evals"]
            run.obs = restore_envs(envs, obs, run.loop)
            self._print(
                f"resumed from checkpoint at env step {run.env_steps} ({run.updates} updates)"
            )
        run.parallel = DataParallel.create(cfg.train_devices)
        if run.parallel is not None:
            run.parallel.check_batch_size(cfg.batch_size)
            run.train_state = run.parallel.replicate(run.train_state)
            self._print(f"train step data-parallel over {run.parallel.size} devices")
        run.publisher = PolicyPublisher(self._policy_device)
        run.policy_state = run.publisher.publish(run.train_state, copy=False)
        run.carry = run.publisher.place(run.carry)
        run.logger = metrics_log.MetricsLogger(cfg.logdir, resume_step=resume_step)
        run.progress = Progress(run.env_steps, run.updates)
        return run

    def _run(self, envs) -> dict[str, Any]:
        cfg = self.config
        run = self._start(envs)
        try:
            if self._loop == "sync":
                status = self._run_sync(envs, run)
            else:
                self._print(
                    f"overlapped loop: acting at most {cfg.actor_max_ahead} env steps ahead of "
                    f"learning, policy refreshed every {cfg.policy_refresh} updates"
                )
                status = run_async(self, envs, run, functools.partial(updates_due, cfg))
            self._save(run)
        finally:
            run.logger.close()
            run.checkpointer.close()
        curve = curves.plot_learning_curve(cfg.logdir)
        self._print(
            f"{status} at env step {run.env_steps}, {run.updates} updates"
            + (f"; learning curve: {curve}" if curve else "")
        )
        return {
            "status": status,
            "env_steps": run.env_steps,
            "updates": run.updates,
            "eval": run.last_eval,
            "train_state": run.train_state,
        }

    def _run_sync(self, envs, run: RunState) -> str:
        """One thread: act, then the updates the train ratio owes, then log/eval/checkpoint."""
        cfg = self.config
        while run.env_steps < cfg.steps:
            self.act(envs, run)
            due = updates_due(cfg, run.env_steps)
            if run.updates < due:
                while run.updates < due:
                    run.train_metrics.append(self.learn(run, run.clock))
                run.policy_state = run.publisher.publish(run.train_state, copy=False)
            self.after_iteration(run)
            if self._stop_signal is not None:
                return f"interrupted by signal {self._stop_signal}"
        return "complete"

    def act(self, envs, run: RunState, lock=None) -> None:
        """One loop iteration of every env: the policy's action (with ``run.policy_state``), the
        step into replay, the env step and the reward model. ``lock`` guards the replay when a
        learner thread shares it."""
        cfg, clock = self.config, run.clock
        obs = run.obs
        policy_obs = {k: obs[k] for k in (*cfg.obs_keys, "is_first")}
        with clock.phase("act"):
            action, carry = run.agent.policy(
                run.policy_state,
                run.carry,
                policy_obs,
                jax.random.fold_in(run.policy_key, run.env_steps),
                "train",
            )
            action = np.asarray(action, np.float32)
            if run.env_steps < cfg.prefill:
                rng = np.random.default_rng([cfg.seed, run.env_steps])
                action = rng.uniform(-1, 1, (self.num_envs, run.act_dim)).astype(np.float32)
                carry = {**carry, "prev_action": jnp.asarray(action)}
            context = {k: np.asarray(carry[k]) for k in CONTEXT_KEYS}
            self._log_transition_reward(run.agent, run.policy_state, carry, action, obs)
        run.carry = carry
        action = np.where(obs["is_last"][:, None], 0.0, action).astype(np.float32)
        with clock.phase("replay"), lock or contextlib.nullcontext():
            run.replay.add({**{k: obs[k] for k in run.step_keys}, "action": action, **context})
        run.episode_metrics.extend(run.loop.record(obs))
        run.obs = self._step(envs, action, obs, clock)
        run.loop.applied(run.obs, action)
        run.env_steps += self.num_envs

    def learn(self, run: RunState, clock: PhaseClock, lock=None) -> dict[str, Any]:
        """One train step on a fresh replay batch; writes the batch's new posteriors back as
        replay context. Returns the step's metrics (device arrays)."""
        cfg = self.config
        with clock.phase("replay"), lock or contextlib.nullcontext():
            sample = run.replay.sample(cfg.batch_size)
        batch = {
            **sample.data,
            **{k: sample.context[k].astype(np.float32) for k in CONTEXT_KEYS},
        }
        with clock.phase("train"):
            if run.parallel is not None:
                batch = run.parallel.shard_batch(batch)
            run.train_state, metrics, new_context = run.agent.train(
                run.train_state, batch, jax.random.fold_in(run.train_key, run.updates)
            )
            new_context = jax.device_get(new_context)
        with clock.phase("replay"), lock or contextlib.nullcontext():
            run.replay.write_context(sample.index, new_context)
        run.updates += 1
        return metrics

    def after_iteration(
        self, run: RunState, pause=contextlib.nullcontext, learner_clock=None
    ) -> None:
        """Log, evaluate and checkpoint when the last iteration crossed their intervals (and log
        and evaluate at the end). ``pause`` holds a concurrent learner still for a checkpoint."""
        cfg, n = self.config, self.num_envs
        done = run.env_steps >= cfg.steps
        if _crossed(run.env_steps, n, cfg.log_every) or done:
            phases = run.clock.read()
            if learner_clock is not None:
                phases.update(learner_clock.read("perf/learner_"))
            self._log(run, run.drain_train_metrics(), phases)
        if _crossed(run.env_steps, n, cfg.eval_every) or done:
            with run.clock.phase("eval"):
                run.last_eval = self._evaluate(
                    run.agent,
                    run.policy_state,
                    jax.random.fold_in(run.eval_key, run.evals),
                    run.env_steps,
                    run.logger,
                )
            run.evals += 1
        if _crossed(run.env_steps, n, cfg.checkpoint_every):
            with run.clock.phase("checkpoint"), pause():
                self._save(run)

    def _save(self, run: RunState) -> None:
        """Checkpoints the agent, the replay's changed chunks, the loop and the reward model at
        ``run.env_steps`` (once per step), then prunes what no kept checkpoint needs."""
        checkpointer, manifests, env_steps = run.checkpointer, run.manifests, run.env_steps
        if env_steps in checkpointer.all_steps():
            return
        previous = manifests[max(manifests)] if manifests else None
        manifests[env_steps] = run.store.save(run.replay, env_steps, previous)
        meta = {
            "env_steps": env_steps,
            "updates": run.updates,
            "evals": run.evals,
            "replay": run.replay.meta(),
            "replay_chunks": manifests[env_steps],
            "loop": run.loop.meta(),
            "seed": self.config.seed,
        }
        arrays = {"loop": run.loop.arrays(run.obs)}
        if self.reward_model is not None:
            arrays["reward_model"] = self.reward_model.state_dict()
        checkpointer.save(env_steps, {"agent": run.train_state, "carry": run.carry}, arrays, meta)
        kept = checkpointer.all_steps()
        for step in list(manifests):
            if step not in kept:
                del manifests[step]
        for step in kept:  # checkpoints of an earlier process of this run
            if step not in manifests:
                manifests[step] = checkpointer.restore_meta(step)["replay_chunks"]
        run.store.prune(manifests.values())

    # ------------------------------------------------------------------ pieces
    def _log_transition_reward(self, agent, train_state, carry, action, obs) -> None:
        """Hands the reward model the reward the agent's extra loss gives this step's (s_t, a_t)
        (GenReward's FB term), so the logged per-episode shares cover every term (no effect on
        training)."""
        score = getattr(agent, "step_transition_reward", None)
        if self.reward_model is None or score is None:
            return
        goal = np.asarray(self.reward_model.goal_index, np.int32)
        reward = np.asarray(score(train_state, carry, action, goal), np.float64)
        self.reward_model.add_agent_reward(np.where(obs["is_last"], 0.0, reward))

    def _log(self, run: RunState, train_metrics: list[dict], phases: dict[str, float]) -> None:
        """Means over the updates and episodes since the last log line, and where the time went
        (``PhaseClock``)."""
        rates = run.progress.rates(run.env_steps, run.updates)
        metrics: dict[str, float] = {**rates, **phases}
        if train_metrics:
            host = jax.device_get(train_metrics)
            for key in host[0]:
                metrics[f"train/{key}"] = float(np.mean([m[key] for m in host]))
        episode_metrics, run.episode_metrics = run.episode_metrics, []
        if episode_metrics:
            for key in episode_metrics[0]:
                metrics[f"episode/{key}"] = float(np.mean([m[key] for m in episode_metrics]))
        metrics["replay/steps"] = float(len(run.replay))
        if self.reward_model is not None:
            metrics.update(self.reward_model.metrics())
        record = run.logger.write(run.env_steps, metrics)
        shown = {
            k: v
            for k, v in record.items()
            if k in ("episode/return", "episode/success", "train/loss/total")
        }
        if self._stdout is not False:
            run.progress.print(run.env_steps, run.updates, rates, shown)

    def _evaluate(self, agent, train_state, key, env_steps, logger) -> dict[str, float]:
        cfg = self.config
        eval_policy_obs_keys = (*cfg.obs_keys, "is_first")
        mode = "eval" if cfg.eval_mode == "mean" else "train"  # the agent's names for the two

        def policy(obs, carry, step):
            action, carry = agent.policy(
                train_state,
                carry,
                {k: obs[k] for k in eval_policy_obs_keys},
                jax.random.fold_in(key, step),
                mode,
            )
            return np.asarray(action, np.float32), carry

        start = time.perf_counter()
        result = evaluation.evaluate(
            self._make_envs,
            self.eval_env_configs,
            policy,
            agent.initial_carry(len(self.eval_env_configs)),
            cfg.eval_episodes,
            "image" if cfg.video else None,
        )
        metrics = result.metrics()
        metrics["perf/eval_seconds"] = time.perf_counter() - start
        logger.write(env_steps, metrics)
        if result.frames is not None:
            video_dir = os.path.join(cfg.logdir, "videos")
            os.makedirs(video_dir, exist_ok=True)
            frames = result.frames
            goal_frames = None if self.reward_model is None else self.reward_model.goal_frames
            if goal_frames is not None:
                frames = media.beside_goal(frames, goal_frames)
            media.write_video(
                os.path.join(video_dir, f"eval_{env_steps:09d}.mp4"),
                np.repeat(np.repeat(frames, 2, 1), 2, 2),
            )
        self._print(
            f"eval at env step {env_steps}: return {metrics['eval/return']:.1f} "
            f"± {metrics['eval/return_std']:.1f}, success {metrics['eval/success']:.2f} "
            f"over {len(result.returns)} episodes"
        )
        return metrics

    def _print(self, text: str) -> None:
        if self._stdout is not False:
            print(text, flush=True)


def observation_spec(
    obs: Mapping[str, np.ndarray], obs_keys: Sequence[str]
) -> dict[str, tuple[tuple[int, ...], Any]]:
    """The agent's obs spec {key: (shape, dtype)} from an env batch's observation [N, ...]."""
    missing = [k for k in obs_keys if k not in obs]
    if missing:
        raise ValueError(
            f"--obs_keys {missing} are not produced by the env (it gives "
            f"{sorted(obs)}); e.g. 'state' needs --proprio"
        )
    return {k: (tuple(obs[k].shape[1:]), obs[k].dtype) for k in obs_keys}


def run_keys(seed: int) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """A run's (init, policy, train, eval) keys; evaluate.py re-derives the eval key from it."""
    return tuple(jax.random.split(jax.random.key(seed), 4))


def train_start(config: TrainerConfig) -> int:
    """Env steps before the first update: the random-action prefill if any, and at least one
    batch's worth of steps in replay (the official `batch_size * batch_length`)."""
    return max(config.prefill, config.batch_size * config.batch_length)


def updates_due(config: TrainerConfig, env_steps: int) -> int:
    """Updates owed after `env_steps` env steps: the train ratio applied past `train_start`."""
    start = train_start(config)
    if env_steps < start:
        return 0
    return 1 + int(
        (env_steps - start) * config.train_ratio // (config.batch_size * config.batch_length)
    )


def _crossed(env_steps: int, increment: int, every: int) -> bool:
    """True when the last increment passed a multiple of `every`."""
    return env_steps // every > (env_steps - increment) // every


def _act_dim(envs) -> int:
    act_dim = getattr(envs, "act_dim", None)
    if act_dim is None:
        from genreward_jax.envs import ACT_DIM

        act_dim = ACT_DIM
    return int(act_dim)


def _default_env_batch(configs: list) -> Any:
    from genreward_jax.envs import EnvBatch

    return EnvBatch(configs)
