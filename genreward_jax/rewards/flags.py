"""absl flags of the reward models (GenReward's goal, α, β, FB; the baselines') and their configs.

--reward_model picks the plug-in (``plugins.py``). With the default, GenReward, and no
--goal_file the run is plain DreamerV3 on the environment reward.
"""

from __future__ import annotations

import dataclasses

from absl import flags

from genreward_jax.rewards.fb import FBConfig
from genreward_jax.rewards.fb_extra_loss import GOAL_SPACES, SCALINGS, TARGETS
from genreward_jax.rewards.goal_rewards import RewardConfig
from genreward_jax.rewards.video import VIDEO_VARIANTS

# Chosen by AUC(expert vs random) in bench/reward_quality.py with the tiny models (README).
DEFAULT_VIDEO_VARIANT = "progress"

REWARD_MODELS = ("genreward", "vlmrm", "roboclip", "tadpole", "none")
flags.DEFINE_enum(
    "reward_model",
    "genreward",
    list(REWARD_MODELS),
    "genreward: the paper's video + FB rewards (needs --goal_file; without one, "
    "plain DreamerV3); vlmrm: the VLM-RM baseline, a CLIP reward per frame (its "
    "prompt embeddings come from --goal_file); roboclip: the RoboCLIP baseline, an "
    "S3D video score per episode (its target from --goal_file); tadpole: the "
    "TADPoLe baseline, a Stable Diffusion reward per frame (its prompt embeddings "
    "and SD folder from --goal_file); none: the env "
    "reward alone (with --goal_file, still at the goal's placement).",
)
flags.DEFINE_float(
    "roboclip_weight",
    0.5,
    "RoboCLIP: weight of its episode score. calibrated: "
    "its per-step spread as a fraction of the env reward's; paper: multiplies "
    "the raw score (the release trains on it alone: --noenv_reward, weight 1).",
)
flags.DEFINE_integer(
    "roboclip_render_size",
    480,
    "RoboCLIP: side of the square frames its "
    "video is cropped from (the release: 480-row renders, 250-pixel crop).",
    lower_bound=2,
)
flags.DEFINE_float(
    "tadpole_weight",
    0.5,
    "TADPoLe: weight of its reward. calibrated: its per-step spread as a fraction "
    "of the env reward's; paper: multiplies the raw reward (the release trains on "
    "it alone: --noenv_reward, weight 1, --tadpole_success_bonus=2).",
)
flags.DEFINE_integer(
    "tadpole_noise_base",
    500,
    "TADPoLe: noise levels t ~ U[base, base + range), one per episode (the "
    "release's Meta-World command: 500).",
    lower_bound=0,
)
flags.DEFINE_integer(
    "tadpole_noise_range", 100, "TADPoLe: width of the noise-level range.", lower_bound=1
)
flags.DEFINE_float("tadpole_align_scale", 2000.0, "TADPoLe: w_align (the release: 2000).")
flags.DEFINE_float("tadpole_recon_scale", 200.0, "TADPoLe: w_recon (the release: 200).")
flags.DEFINE_integer(
    "tadpole_render_size",
    448,
    "TADPoLe: side of the frames it scores (the release: 448, resized to the model's 512).",
    lower_bound=2,
)
flags.DEFINE_enum(
    "tadpole_pixel_range",
    "unit",
    ["unit", "release"],
    "TADPoLe: unit = frames/255 mapped to [-1, 1] (the paper); release = the "
    "release's image variant, 2x − 1 of the raw 0-255 values.",
)
flags.DEFINE_float(
    "tadpole_success_bonus",
    0.0,
    "TADPoLe: added × success to each step's raw reward (the release on Meta-World: 2).",
)
flags.DEFINE_float(
    "vlmrm_weight",
    0.5,
    "VLM-RM: weight of its reward. calibrated: its per-step "
    "spread as a fraction of the env reward's; paper: multiplies the raw reward "
    "1 − ½‖(x − g)P‖² (VLM-RM trains on it alone: --noenv_reward, weight 1).",
)
flags.DEFINE_float(
    "vlmrm_lambda",
    0.5,
    "VLM-RM: λ of the goal-baseline projection (0: cosine "
    "to the goal prompt; 1: only the baseline-to-goal direction counts).",
    lower_bound=0.0,
    upper_bound=1.0,
)
flags.DEFINE_string(
    "goal_file",
    None,
    "Goal .npz from preprocessing/make_goals.py, or the "
    "bank.json of make_goals.py --placements=N. Unset: plain DreamerV3 on the "
    "environment reward.",
)
flags.DEFINE_float(
    "alpha",
    0.5,
    "Weight α of the video reward. calibrated: its per-step "
    "spread as a fraction of the env reward's; paper: multiplies the raw cosine "
    "(the release: 0.01).",
)
flags.DEFINE_float(
    "beta",
    0.5,
    "Weight β of the FB reward. calibrated: its per-step spread as "
    "a fraction of the env reward's; paper: multiplies the raw F(s,a,z)ᵀz (the "
    "release: 1e-5).",
)
flags.DEFINE_enum(
    "reward_scaling",
    "calibrated",
    list(SCALINGS),
    "calibrated: each generated term standardised online and weighted against the "
    "env reward's spread; paper: the release's literal r_env + α·r_video + "
    "β·F(s,a,z)ᵀz.",
)
flags.DEFINE_enum(
    "video_variant",
    DEFAULT_VIDEO_VARIANT,
    list(VIDEO_VARIANTS),
    "Video reward (genreward_jax/rewards/video.py): paper = every window against "
    "the whole goal video; progress = against the goal segment of the same "
    "episode fraction; centred = latents minus a still clip of the start scene.",
)
flags.DEFINE_integer(
    "video_goal_steps",
    0,
    "Progress variants: env steps the goal video spans "
    "(0: the duration the goal file records — a scripted goal's length, the "
    "expert's pace for a generated one — else the whole episode).",
    lower_bound=0,
)
flags.DEFINE_enum(
    "fb_reward_target",
    "actor",
    list(TARGETS),
    "actor: r_fb(s_t, a_t) is the reward of the transition it belongs to, in "
    "imagination and the replay value loss (action-aware); reward_head: added to "
    "the reward head's target (Eq. 10 read literally; the head sees s_t only).",
)
flags.DEFINE_enum(
    "fb_state_input",
    "auto",
    ["auto", "latent", "decoded"],
    "What F reads as the state s of F(s, a, z): latent = the world model's "
    "features (they drift while it trains, and Q with them); decoded = the "
    "decoder's prediction of the 39-d state from them (stable; needs --obs_keys "
    "with state); auto = decoded when the agent sees the state, else latent "
    "(bench/learn_rewards.py measures the difference).",
)
flags.DEFINE_enum(
    "goal_space",
    "dino",
    list(GOAL_SPACES),
    "What B (and the goal) of the FB reward see: dino = DINOv3 features of the "
    "frames (the paper); state = the 39-d proprioceptive state with the goal "
    "state at the keyframe of a scripted goal: a CONTROL for science runs that "
    "bypasses the image encoder, not the paper's method.",
)
flags.DEFINE_enum(
    "goal_frame",
    "keyframe",
    ["keyframe", "last"],
    "The goal frame of the FB reward: the keyframe picked with OpenCLIP (Eq. 6), "
    "or the goal video's last frame (a scripted goal's solved scene).",
)
flags.DEFINE_enum(
    "placement",
    "goal",
    ["goal", "random"],
    "goal: every episode (training and evaluation) starts at the goal's recorded "
    "object/goal placement (with a bank, at one of its placements, and rewards use "
    "that goal); random: fresh placements every episode with one goal (the "
    "release).",
)
flags.DEFINE_bool("video_reward", True, "Add α·r_video (ablation: --novideo_reward).")
flags.DEFINE_bool("fb_reward", True, "Train FB and add β·r_fb (ablation: --nofb_reward).")
flags.DEFINE_bool("env_reward", True, "Add the environment reward (off: generated rewards only).")
flags.DEFINE_integer("video_interval", 128, "Env steps per video-reward window.", lower_bound=1)
flags.DEFINE_integer(
    "fb_train_steps",
    100_000,
    "Env steps during which F and B train; frozen afterwards.",
    lower_bound=0,
)
_FB = {f.name: f.default for f in dataclasses.fields(FBConfig)}  # the FB flags' defaults
flags.DEFINE_integer("fb_z_dim", _FB["z_dim"], "FB embedding size.", lower_bound=1)
flags.DEFINE_integer("fb_hidden", _FB["hidden"], "FB hidden units.", lower_bound=1)
flags.DEFINE_float(
    "fb_discount", _FB["discount"], "FB discount γ.", lower_bound=0.0, upper_bound=0.999
)
flags.DEFINE_float("fb_lr", _FB["lr"], "FB Adam learning rate.", lower_bound=0.0)
flags.DEFINE_float(
    "fb_tau", _FB["tau"], "FB target-network update rate.", lower_bound=0.0, upper_bound=1.0
)
flags.DEFINE_bool(
    "fb_standardise_inputs",
    _FB["standardise_goal_inputs"],
    "Feed B per-dimension z-scores of its goal-space "
    "features (running replay statistics, frozen with FB); off: raw features.",
)
flags.DEFINE_enum(
    "encoder_dtype",
    "auto",
    ["auto", "float32", "bfloat16"],
    "Compute dtype of the Flax VAE and DINOv3; auto = float32 on CPU, bfloat16 on GPU/TPU.",
)

FLAGS = flags.FLAGS


def reward_config_from_flags(
    default_dtype: str, episode_length: int, fv: flags.FlagValues = FLAGS
) -> RewardConfig | None:
    """GenReward's config; None without --goal_file; raises ValueError/FileNotFoundError on bad
    values."""
    if not fv.goal_file:
        return None
    if not (fv.video_reward or fv.fb_reward or fv.env_reward):
        raise ValueError("--noenv_reward, --novideo_reward and --nofb_reward leave no reward")
    dtype = encoder_dtype(fv, default_dtype)
    return RewardConfig(
        goal_file=fv.goal_file,
        alpha=fv.alpha,
        video_reward=fv.video_reward,
        env_reward=fv.env_reward,
        video_interval=fv.video_interval,
        encoder_dtype=dtype,
        video_variant=fv.video_variant,
        reward_scaling=fv.reward_scaling,
        episode_length=episode_length,
        video_goal_steps=fv.video_goal_steps or None,
        goal_space=fv.goal_space,
        goal_frame=fv.goal_frame,
    )


def encoder_dtype(fv: flags.FlagValues, compute_dtype: str) -> str:
    """--encoder_dtype resolved: 'auto' follows the agent's compute dtype."""
    return compute_dtype if fv.encoder_dtype == "auto" else fv.encoder_dtype


def fb_config_from_flags(fv: flags.FlagValues = FLAGS) -> FBConfig:
    return FBConfig(
        z_dim=fv.fb_z_dim,
        hidden=fv.fb_hidden,
        discount=fv.fb_discount,
        lr=fv.fb_lr,
        tau=fv.fb_tau,
        standardise_goal_inputs=fv.fb_standardise_inputs,
    )
