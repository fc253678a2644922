"""Train DreamerV3 on Meta-World: `python -m genreward_jax.main --flagfile=configs/quickstart.cfg`.

Rerunning the same command on the same --logdir resumes from its latest checkpoint. The run's
resolved flags are written to <logdir>/flags.cfg (a flagfile: `--flagfile=<logdir>/flags.cfg`
reruns it). Env flags (task, camera, reward mode, ...) live in genreward_jax/envs/flags.py; the
loop and agent-size flags are defined here, next to the code that turns them into configs.
"""

from __future__ import annotations

import dataclasses
import os
import sys

from absl import app, flags
from absl import logging as absl_logging

from genreward_jax.dreamer.config import PRESETS
from genreward_jax.envs import flags as env_flags
from genreward_jax.rewards import flags as reward_flags  # noqa: F401 (defines the reward flags)
from genreward_jax.rewards import plugins
from genreward_jax.trainer import TrainerConfig

FLAGS = flags.FLAGS
_TRAINER = {f.name: f.default for f in dataclasses.fields(TrainerConfig)}  # the flags' defaults

flags.DEFINE_string(
    "logdir",
    None,
    "Run directory: checkpoints, metrics, videos, flags. An existing run directory is resumed.",
)
flags.DEFINE_integer(
    "steps", _TRAINER["steps"], "Total env steps (summed over training envs).", lower_bound=1
)
flags.DEFINE_float(
    "train_ratio",
    _TRAINER["train_ratio"],
    "Replayed steps per env step (batch_size * batch_length steps per update).",
    lower_bound=1e-6,
)
flags.DEFINE_integer("batch_size", _TRAINER["batch_size"], "Sequences per update.", lower_bound=1)
flags.DEFINE_integer(
    "batch_length",
    _TRAINER["batch_length"],
    "Training steps T per sequence (plus one replay-context step).",
    lower_bound=1,
)
flags.DEFINE_integer(
    "replay_capacity",
    _TRAINER["replay_capacity"],
    "Replay size in steps over all envs.",
    lower_bound=1,
)
flags.DEFINE_bool(
    "replay_online", _TRAINER["replay_online"], "Train on every fresh sequence at least once."
)
flags.DEFINE_bool(
    "compact_context",
    _TRAINER["compact_context"],
    "Store the replay context (posterior state per step) "
    "as float16 deter + uint8 one-hot stoch instead of float32.",
)
flags.DEFINE_integer(
    "prefill",
    _TRAINER["prefill"],
    "Env steps with uniform random actions. 0 (default) is the "
    "official start: the agent acts with its initial policy from the first "
    "step, and training starts once replay holds batch_size x batch_length "
    "steps (or after the prefill, whichever is later).",
    lower_bound=0,
)
flags.DEFINE_list(
    "obs_keys",
    list(_TRAINER["obs_keys"]),
    "Observation keys the agent encodes: image and/or "
    "state (the 39-d proprioceptive vector, needs --proprio).",
)
flags.DEFINE_enum("preset", "12m", PRESETS, "DreamerV3 size preset.")
flags.DEFINE_enum(
    "compute_dtype",
    "auto",
    ["auto", "float32", "bfloat16"],
    "Matmul/conv dtype; auto = float32 on CPU (bfloat16 is slower there), "
    "bfloat16 on GPU/TPU. Parameters are always float32.",
)
flags.DEFINE_float("lr", None, "Override the preset's learning rate.", lower_bound=0.0)
flags.DEFINE_integer(
    "warmup", None, "Override the preset's learning-rate warmup (updates).", lower_bound=0
)
flags.DEFINE_integer(
    "eval_every",
    _TRAINER["eval_every"],
    "Evaluate every this many env steps (and at the end).",
    lower_bound=1,
)
flags.DEFINE_integer(
    "eval_episodes", _TRAINER["eval_episodes"], "Episodes per evaluation.", lower_bound=1
)
flags.DEFINE_enum(
    "eval_mode",
    _TRAINER["eval_mode"],
    ["mean", "sample"],
    "Eval actions: the policy's mean (deterministic) or samples, as the official agent evaluates.",
)
flags.DEFINE_integer(
    "eval_envs",
    _TRAINER["eval_envs"],
    "Parallel eval envs (eval seeds differ from training).",
    lower_bound=1,
)
flags.DEFINE_bool("video", _TRAINER["video"], "Write an mp4 of one eval episode per evaluation.")
flags.DEFINE_integer(
    "checkpoint_every",
    _TRAINER["checkpoint_every"],
    "Checkpoint every this many env steps.",
    lower_bound=1,
)
flags.DEFINE_integer(
    "keep_checkpoints",
    _TRAINER["keep_checkpoints"],
    "Checkpoints kept (the latest ones).",
    lower_bound=1,
)
flags.DEFINE_integer(
    "log_every", _TRAINER["log_every"], "Log metrics every this many env steps.", lower_bound=1
)

flags.DEFINE_integer(
    "train_devices",
    _TRAINER["train_devices"],
    "Devices the train step runs data-parallel on (the batch split along B, parameters "
    "replicated; --batch_size must divide evenly); 0: every device (of every process with "
    "--distributed).",
    lower_bound=0,
)
flags.DEFINE_enum(
    "distributed",
    "auto",
    ["auto", "on", "off"],
    "Multi-process runs (jax.distributed.initialize): auto = when a multi-task SLURM job, a TPU "
    "pod slice or JAX_COORDINATOR_ADDRESS is found; each process keeps its own envs and replay "
    "under <logdir>/process_<i> and contributes its batch to the global one.",
)

flags.DEFINE_string(
    "policy_device",
    _TRAINER["policy_device"],
    "Where the policy acts: empty = with the train step's parameters, 'cpu' = the host, or a "
    "local device index (e.g. 1 for a second GPU); the parameters are copied there after "
    "updates.",
)
flags.DEFINE_enum(
    "loop",
    _TRAINER["loop"],
    ["auto", "sync", "async"],
    "sync: act, then train, in one thread (bitwise exact resume); async: acting and learning "
    "overlap in two threads, the train ratio kept by a rate limiter (resume works, not "
    "bitwise); auto: sync on CPU, async on GPU/TPU.",
)
flags.DEFINE_integer(
    "actor_max_ahead",
    _TRAINER["actor_max_ahead"],
    "--loop=async: env steps acting may run ahead of the updates learning has done "
    "(at least --num_envs).",
    lower_bound=1,
)
flags.DEFINE_bool(
    "reuse_scratch_memory",
    True,
    "Keep the CPU train step's scratch memory mapped between updates (genreward_jax/"
    "host_memory.py: jax runs CPU programs on the calling thread, glibc malloc neither maps "
    "large blocks nor trims the heap); the process then keeps its peak heap. No effect on "
    "accelerator programs.",
)
flags.DEFINE_integer(
    "policy_refresh",
    _TRAINER["policy_refresh"],
    "--loop=async: updates between copies of the learner's parameters to the actor.",
    lower_bound=1,
)

OBS_KEYS = ("image", "state")
TRAIN_STREAM, EVAL_STREAM = 0, 1  # env seed streams: eval envs never share training placements


def trainer_config_from_flags() -> TrainerConfig:
    """TrainerConfig from the flags of the same names (their defaults are its defaults)."""
    import jax

    unknown = [k for k in FLAGS.obs_keys if k not in OBS_KEYS]
    if unknown or not FLAGS.obs_keys:
        raise ValueError(f"--obs_keys {FLAGS.obs_keys} must be a non-empty subset of {OBS_KEYS}")
    if not FLAGS.logdir:
        raise ValueError("--logdir is required (the run directory; reuse it to resume)")
    # --seed is an env flag (it also seeds the envs).
    values = {f.name: FLAGS[f.name].value for f in dataclasses.fields(TrainerConfig)}
    logdir = os.path.abspath(FLAGS.logdir)
    if jax.process_count() > 1:
        logdir = os.path.join(logdir, f"process_{jax.process_index()}")
    values.update(logdir=logdir, obs_keys=tuple(FLAGS.obs_keys))
    return TrainerConfig(**values)


def agent_config_from_flags():
    import jax

    from genreward_jax.dreamer import preset

    dtype = FLAGS.compute_dtype
    if dtype == "auto":
        dtype = "float32" if jax.default_backend() == "cpu" else "bfloat16"
    overrides = {"compute_dtype": dtype}
    if FLAGS.lr is not None:
        overrides["lr"] = FLAGS.lr
    if FLAGS.warmup is not None:
        overrides["warmup"] = FLAGS.warmup
    return preset(FLAGS.preset, **overrides)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected positional arguments {argv[1:]}; flags start with --")
    if not FLAGS["verbosity"].present:
        absl_logging.set_verbosity(absl_logging.WARNING)  # Orbax logs every save at INFO
    from genreward_jax import run_flags
    from genreward_jax.host_memory import reuse_scratch_memory
    from genreward_jax.sharding import initialize_distributed

    initialize_distributed(FLAGS.distributed)  # before anything else starts JAX
    if FLAGS.reuse_scratch_memory:
        reuse_scratch_memory()  # before JAX creates its CPU backend
    from genreward_jax.checkpoint import CheckpointMismatchError
    from genreward_jax.dreamer import Agent
    from genreward_jax.goals import GoalFileError
    from genreward_jax.trainer import Trainer

    try:
        trainer_config = trainer_config_from_flags()
        agent_config = agent_config_from_flags()
        env_configs = env_flags.env_configs_from_flags(stream=TRAIN_STREAM)
        eval_configs = env_flags.env_configs_from_flags(
            stream=EVAL_STREAM, num_envs=trainer_config.eval_envs
        )
        reward_config = plugins.reward_config(FLAGS, agent_config.compute_dtype, FLAGS.time_limit)
    except (ValueError, FileNotFoundError) as error:
        # Same shape as absl's own flag errors; absl's UsageError would print the whole help.
        sys.exit(
            f"FATAL Flags error: {error}\nPass --helpshort or --helpfull to see help on flags."
        )
    try:
        setup = plugins.build_reward(
            reward_config,
            plugins.BuildContext(FLAGS, agent_config, trainer_config, env_configs, eval_configs),
        )
    except (GoalFileError, ValueError) as error:
        sys.exit(f"FATAL goal error: {error}")
    os.makedirs(trainer_config.logdir, exist_ok=True)
    run_flags.write_flags(trainer_config.logdir, FLAGS)

    def agent_factory(obs_spec, act_dim):
        return Agent(agent_config, obs_spec, act_dim, extra=setup.extra)

    trainer = Trainer(
        trainer_config,
        agent_factory,
        setup.env_configs,
        setup.eval_configs,
        reward_model=setup.model,
    )
    try:
        result = trainer.run()
    except CheckpointMismatchError as error:
        sys.exit(f"FATAL checkpoint error: {error}")
    if result["status"] != "complete":
        print(
            f"stopped early ({result['status']}); rerun the same command to resume", file=sys.stderr
        )


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
