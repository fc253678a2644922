"""Reward models as named plug-ins (``--reward_model``): how each is made from flags.

A plug-in is two functions: ``config_from_flags`` (flag values -> its config, or None when the
run has no reward model; raises ValueError/FileNotFoundError on bad flags, before anything slow
happens) and ``build`` (config -> the ``interface.RewardModel`` and the ``ExtraLoss`` it adds to
the agent's train step, if any). The training entry point and ``evaluate.py`` call
``reward_config`` and ``build_reward`` and know nothing else of any reward model.

Adding a baseline: write its reward model (``interface.py`` says what it offers), then a
``RewardPlugin`` here and its name in ``flags.REWARD_MODELS``; for the reward-quality benchmark,
its terms in ``quality_terms.py``.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Sequence
from typing import Any

from absl import flags

from genreward_jax.rewards.flags import encoder_dtype
from genreward_jax.rewards.interface import RewardModel


@dataclasses.dataclass(frozen=True)
class RewardSetup:
    """What a plug-in hands the trainer: the reward model (None: the env reward alone), the
    agent's extra loss (None: none), and the env configs with the goal's placements applied."""

    model: RewardModel | None
    extra: Any | None
    env_configs: list
    eval_configs: list


@dataclasses.dataclass(frozen=True)
class BuildContext:
    flag_values: flags.FlagValues
    agent_config: Any
    trainer_config: Any
    env_configs: Sequence[Any]
    eval_configs: Sequence[Any]


@dataclasses.dataclass(frozen=True)
class RewardPlugin:
    name: str
    config_from_flags: Callable[[flags.FlagValues, str, int], Any | None]
    build: Callable[[Any, BuildContext], RewardSetup]
    # (goal_file, goal, benchmark options) -> quality.RewardTerms; None: no benchmark rows
    quality_terms: Callable[[str, Any, Any], list] | None = None


def with_goal_placements(model, env_configs, eval_configs, placement: str) -> tuple[list, list]:
    """Env configs whose episodes start at the goal's placement(s) for --placement=goal (training
    and evaluation alike: the goal only describes those scenes), unchanged for random."""
    if model is None:
        return list(env_configs), list(eval_configs)
    if placement == "random":
        if model.num_goals > 1:
            raise ValueError(
                "a goal bank pairs episodes with placements: it needs --placement=goal"
            )
        return list(env_configs), list(eval_configs)
    placements = model.placements
    return (
        [dataclasses.replace(c, placements=placements) for c in env_configs],
        [dataclasses.replace(c, placements=placements) for c in eval_configs],
    )


def _warn_other_task(goal_task: str, task: str) -> None:
    """Allowed (the paper's cross-domain ablation uses goals of other robots), but said."""
    if goal_task != task:
        print(
            f"warning: the goal is for {goal_task!r} but the agent trains on {task!r}",
            file=sys.stderr,
        )


# ------------------------------------------------------------------ GenReward


def _genreward_config(fv: flags.FlagValues, compute_dtype: str, episode_length: int):
    from genreward_jax.rewards import flags as reward_flags

    return reward_flags.reward_config_from_flags(compute_dtype, episode_length, fv)


def fb_state_input(choice: str, obs_keys: Sequence[str]) -> str:
    """--fb_state_input resolved: 'auto' is 'decoded' when the agent encodes (so decodes) the
    state vector, else 'latent'. Measured (bench/learn_rewards.py, README): on the latent,
    Q's correlation with closeness to the goal turns negative as the world model's features
    drift; on the decoded state it stays positive and the FB arms learn more."""
    if choice == "auto":
        return "decoded" if "state" in obs_keys else "latent"
    return choice


def make_fb_extra(goal_rewards, fv: flags.FlagValues, agent_config, trainer_config):
    """FB trained in the agent's step, frozen after --fb_train_steps env steps."""
    from genreward_jax.envs import ACT_DIM
    from genreward_jax.envs.metaworld_env import STATE_DIM
    from genreward_jax.rewards import flags as reward_flags
    from genreward_jax.rewards.fb_extra_loss import FBExtraLoss, FBRewardSpec
    from genreward_jax.trainer import updates_due

    state_input = fb_state_input(fv.fb_state_input, trainer_config.obs_keys)
    state_dim = STATE_DIM if state_input == "decoded" else agent_config.feat_size
    spec = FBRewardSpec(
        state_dim=state_dim,
        action_dim=ACT_DIM,
        goal_feature=goal_rewards.goal_features,
        beta=fv.beta,
        freeze_after_updates=updates_due(trainer_config, fv.fb_train_steps),
        target=fv.fb_reward_target,
        scaling=fv.reward_scaling,
        env_reward=fv.env_reward,
        goal_space=fv.goal_space,
        state_input=state_input,
    )
    return FBExtraLoss(reward_flags.fb_config_from_flags(fv), spec)


def _genreward_build(config, ctx: BuildContext) -> RewardSetup:
    from genreward_jax.rewards.goal_rewards import GoalRewards

    fv = ctx.flag_values
    model = GoalRewards(config, len(ctx.env_configs), ctx.env_configs[0].size)
    _warn_other_task(model.goal.task, ctx.env_configs[0].task)
    print(
        f"goal {config.goal_file}: {model.num_goals} goal(s), {model.goal.frames.shape[0]} "
        f"frames at {model.goal.resolution}px, encoders verified; video reward "
        f"'{config.video_variant}', {config.reward_scaling} scaling",
        flush=True,
    )
    train, evals = with_goal_placements(model, ctx.env_configs, ctx.eval_configs, fv.placement)
    extra = make_fb_extra(model, fv, ctx.agent_config, ctx.trainer_config) if fv.fb_reward else None
    return RewardSetup(model, extra, train, evals)


# ------------------------------------------------------------------ baselines


def _baseline_setup(model, ctx: BuildContext, banner: str) -> RewardSetup:
    """A baseline's reward model at its goal's placements, with no extra loss; says so."""
    _warn_other_task(model.goal.task, ctx.env_configs[0].task)
    print(banner, flush=True)
    train, evals = with_goal_placements(
        model, ctx.env_configs, ctx.eval_configs, ctx.flag_values.placement
    )
    return RewardSetup(model, None, train, evals)


def _goal_file_required(fv: flags.FlagValues, what: str) -> None:
    if not fv.goal_file:
        raise ValueError(
            f"--reward_model={fv.reward_model} needs --goal_file (a goal from "
            f"preprocessing/make_goals.py holds its {what})"
        )


# ------------------------------------------------------------------ VLM-RM


def _vlmrm_config(fv: flags.FlagValues, compute_dtype: str, episode_length: int):
    from genreward_jax.rewards.vlmrm_rewards import VLMRMConfig

    del episode_length
    _goal_file_required(fv, "prompt embeddings")
    dtype = encoder_dtype(fv, compute_dtype)
    return VLMRMConfig(
        goal_file=fv.goal_file,
        weight=fv.vlmrm_weight,
        lam=fv.vlmrm_lambda,
        env_reward=fv.env_reward,
        reward_scaling=fv.reward_scaling,
        encoder_dtype=dtype,
    )


def _vlmrm_build(config, ctx: BuildContext) -> RewardSetup:
    from genreward_jax.rewards.vlmrm_rewards import VLMRMRewards

    model = VLMRMRewards(config, len(ctx.env_configs), ctx.env_configs[0].size)
    clip = model.goal.provenance["clip"]
    return _baseline_setup(
        model,
        ctx,
        f"VLM-RM: {clip['model']} at {model.clip_size}px, goal prompts "
        f"{clip['vlmrm_goal_prompts']}, baseline {clip['vlmrm_baseline_prompts']}, "
        f"λ = {config.lam}, {config.reward_scaling} scaling",
    )


# ------------------------------------------------------------------ RoboCLIP


def _roboclip_config(fv: flags.FlagValues, compute_dtype: str, episode_length: int):
    from genreward_jax.rewards.roboclip_rewards import RoboCLIPConfig

    _goal_file_required(fv, "S3D target")
    dtype = encoder_dtype(fv, compute_dtype)
    return RoboCLIPConfig(
        goal_file=fv.goal_file,
        weight=fv.roboclip_weight,
        env_reward=fv.env_reward,
        reward_scaling=fv.reward_scaling,
        render_size=fv.roboclip_render_size,
        episode_length=episode_length,
        encoder_dtype=dtype,
    )


def _roboclip_build(config, ctx: BuildContext) -> RewardSetup:
    from genreward_jax.rewards.roboclip_rewards import RoboCLIPRewards

    model = RoboCLIPRewards(config, len(ctx.env_configs), ctx.env_configs[0].size)
    entry = model.goal.provenance["roboclip"]
    target = repr(entry["prompt"]) if entry["target"] == "text" else "the goal video"
    return _baseline_setup(
        model,
        ctx,
        f"RoboCLIP: {entry['id']}, target {target}, {model.crop}px crops of every "
        f"{model.stride}th frame, {config.reward_scaling} scaling",
    )


# ------------------------------------------------------------------ TADPoLe


def _tadpole_config(fv: flags.FlagValues, compute_dtype: str, episode_length: int):
    from genreward_jax.rewards.tadpole_rewards import TADPoLeConfig

    del episode_length
    _goal_file_required(fv, "prompt embeddings")
    return TADPoLeConfig(
        goal_file=fv.goal_file,
        weight=fv.tadpole_weight,
        env_reward=fv.env_reward,
        reward_scaling=fv.reward_scaling,
        noise_base=fv.tadpole_noise_base,
        noise_range=fv.tadpole_noise_range,
        align_scale=fv.tadpole_align_scale,
        recon_scale=fv.tadpole_recon_scale,
        render_size=fv.tadpole_render_size,
        pixel_range=fv.tadpole_pixel_range,
        success_bonus=fv.tadpole_success_bonus,
        seed=fv.seed,
        encoder_dtype=encoder_dtype(fv, compute_dtype),
    )


def _tadpole_build(config, ctx: BuildContext) -> RewardSetup:
    from genreward_jax.rewards.tadpole_rewards import TADPoLeRewards

    model = TADPoLeRewards(config, len(ctx.env_configs), ctx.env_configs[0].size)
    entry = model.goal.provenance["tadpole"]
    return _baseline_setup(
        model,
        ctx,
        f"TADPoLe: {entry['id']}, prompt {entry['prompt']!r}, t ~ U[{config.noise_base}, "
        f"{config.noise_base + config.noise_range}), {config.render_size}px frames, "
        f"{config.reward_scaling} scaling",
    )


# ------------------------------------------------------------------ none


def _none_config(fv: flags.FlagValues, compute_dtype: str, episode_length: int):
    del compute_dtype, episode_length
    return fv.goal_file or None


def _none_build(goal_file, ctx: BuildContext) -> RewardSetup:
    """The env reward alone; with --goal_file and --placement=goal, at the goal's placements
    (the dense baseline of a comparison sees the scenes the other arms see)."""
    from genreward_jax.rewards.baseline import goal_placements
    from genreward_jax.rewards.goal_rewards import load_goals

    train, evals = list(ctx.env_configs), list(ctx.eval_configs)
    if goal_file and ctx.flag_values.placement == "goal":
        placements = goal_placements(load_goals(goal_file))
        train = [dataclasses.replace(c, placements=placements) for c in train]
        evals = [dataclasses.replace(c, placements=placements) for c in evals]
    return RewardSetup(None, None, train, evals)


def _genreward_quality_terms(goal_file: str, goal, options) -> list:
    from genreward_jax.rewards.quality_terms import genreward_terms

    return genreward_terms(goal_file, goal, options)


def _vlmrm_quality_terms(goal_file: str, goal, options) -> list:
    from genreward_jax.rewards.quality_terms import vlmrm_terms

    return vlmrm_terms(goal_file, goal, options)


def _tadpole_quality_terms(goal_file: str, goal, options) -> list:
    from genreward_jax.rewards.quality_terms import tadpole_terms

    return tadpole_terms(goal_file, goal, options)


def _roboclip_quality_terms(goal_file: str, goal, options) -> list:
    from genreward_jax.rewards.quality_terms import roboclip_terms

    return roboclip_terms(goal_file, goal, options)


PLUGINS = {
    p.name: p
    for p in (
        RewardPlugin("genreward", _genreward_config, _genreward_build, _genreward_quality_terms),
        RewardPlugin("vlmrm", _vlmrm_config, _vlmrm_build, _vlmrm_quality_terms),
        RewardPlugin("roboclip", _roboclip_config, _roboclip_build, _roboclip_quality_terms),
        RewardPlugin("tadpole", _tadpole_config, _tadpole_build, _tadpole_quality_terms),
        RewardPlugin("none", _none_config, _none_build),
    )
}


def reward_config(fv: flags.FlagValues, compute_dtype: str, episode_length: int) -> Any | None:
    """The --reward_model plug-in's config from flags (None: no reward model to build)."""
    return PLUGINS[fv.reward_model].config_from_flags(fv, compute_dtype, episode_length)


def build_reward(config, ctx: BuildContext) -> RewardSetup:
    """The --reward_model plug-in's reward model, extra loss and env configs."""
    plugin = PLUGINS[ctx.flag_values.reward_model]
    if config is None:
        return RewardSetup(None, None, list(ctx.env_configs), list(ctx.eval_configs))
    return plugin.build(config, ctx)
