"""Reward models' terms as ``quality.RewardTerm``s, computed on recorded rollouts as online.

GenReward: the video reward (each variant) and the FB reward. The video term runs each episode
through ``VideoWindows`` and ``VideoReward`` (the online classes). The FB term has no world
model to borrow a state from, so F sees the same goal-space features as B (DINOv3 of the frame,
or the 39-d state for the oracle control) and is trained on a replay of all the benchmark's
rollouts with the standard FB loss (``fb.fb_loss``).

VLM-RM: the online reward function (``vlmrm_rewards.vlmrm_reward_fn``) on every arriving frame;
the rollouts' frames (at the goal's resolution) are resized to the tower's input, where online
the env renders at that size.

TADPoLe: the online reward function (``tadpole_rewards.tadpole_reward_fn``) on every arriving
frame, one noise level per rollout.

RoboCLIP: the online scorer on each rollout's video (the kept frames, centre-cropped: at the
rollouts' resolution, where online the env renders larger), at the rollout's last step.

Each reward model's ``*_terms(goal_file, goal, options)`` is what its plug-in hands the
benchmark (``plugins.RewardPlugin.quality_terms``); ``options`` carries the benchmark's flags.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from genreward_jax.encoders import latent_mean_fn, load_dinov3, load_vae_encoder, pooled_feature_fn
from genreward_jax.goals import GoalFile, GoalFileError, encoder_folder
from genreward_jax.rewards import fb
from genreward_jax.rewards.quality import Rollout
from genreward_jax.rewards.video import VideoReward, VideoWindows, video_targets

f32 = jnp.float32


class VideoTerm:
    """r_video of one variant: reward at each window-closing step, zero elsewhere."""

    def __init__(
        self,
        encode_mean: Callable,
        goal: GoalFile,
        variant: str,
        interval: int,
        episode_length: int,
        goal_steps: int | None = None,
    ):
        self.name = f"video/{variant}" + (
            f" D={goal_steps}" if goal_steps and variant.startswith("progress") else ""
        )
        self.interval = interval
        self.num_samples = goal.num_sampled_frames
        self.resolution = goal.resolution
        targets = video_targets(
            encode_mean,
            goal.frames,
            goal.latent_mean,
            variant,
            interval,
            episode_length,
            goal.num_sampled_frames,
            goal_steps,
        )
        self.reward = VideoReward(encode_mean, targets, centred=variant.endswith("centred"))
        self.num_windows = len(targets)

    def episode_rewards(self, rollouts: Sequence[Rollout]) -> list[np.ndarray]:
        out = []
        for rollout in rollouts:
            windows = VideoWindows(1, self.interval, self.num_samples, self.resolution)
            rewards = np.zeros(len(rollout.actions), np.float32)
            for step, frame in enumerate(rollout.frames):
                closed, clips = windows.add(np.array([step]), frame[None])
                if len(closed):
                    index = np.minimum(
                        windows.window_index(np.array([step])) - 1, self.num_windows - 1
                    )
                    rewards[step - 1] = float(self.reward(clips, index, windows.first_frames)[0])
            out.append(rewards)
        return out


class FBTerm:
    """r_fb(s_t, a_t) = F(φ(s_t), a_t, z_g)ᵀ z_g with z_g = B(φ(goal)), φ the goal space.

    goal_space 'dino': φ = DINOv3 pooled feature of the frame (the paper's B input); 'state': the
    39-d env state (an oracle control that bypasses the image encoder, not the paper's method).
    The reward of transition t is stored at index t (it belongs to (s_t, a_t))."""

    def __init__(
        self,
        goal_space: str,
        goal_feature: np.ndarray,
        config: fb.FBConfig,
        features: Callable[[np.ndarray], np.ndarray] | None = None,
        steps: int = 2000,
        batch_size: int = 512,
        lr: float = 1e-3,
        seed: int = 0,
        standardise: bool = True,
    ):
        if goal_space not in ("dino", "state"):
            raise ValueError(f"goal_space must be 'dino' or 'state', got {goal_space!r}")
        if goal_space == "dino" and features is None:
            raise ValueError("goal_space 'dino' needs the DINOv3 feature function")
        self.name = f"fb/{goal_space}" + ("" if standardise else " (raw inputs)")
        self.standardise = standardise
        self.shift, self.scale = 0.0, 1.0
        self.goal_space = goal_space
        self.goal_feature = np.asarray(goal_feature, np.float32)
        self.config = config
        self.features = features
        self.steps, self.batch_size, self.lr, self.seed = steps, batch_size, lr, seed
        self.params = None
        self.losses: np.ndarray | None = None
        self._cache: dict[int, np.ndarray] = {}

    def _phi(self, rollout: Rollout) -> np.ndarray:
        """Goal-space features of every observation of a rollout [L+1, G] (cached)."""
        key = id(rollout)
        if key not in self._cache:
            if self.goal_space == "state":
                self._cache[key] = rollout.states
            else:
                self._cache[key] = np.concatenate(
                    [
                        self.features(rollout.frames[i : i + 64])
                        for i in range(0, len(rollout.frames), 64)
                    ]
                )
        return self._cache[key]

    def fit(self, rollouts: Sequence[Rollout]) -> None:
        phis = [self._phi(r) for r in rollouts]
        if self.standardise:
            # Per-dimension z-scores over the replay, as the online FB feeds B
            # (fb.normaliser_update says why).
            stacked = np.concatenate(phis)
            self.shift, self.scale = stacked.mean(0), stacked.std(0) + 1e-6
            phis = [(p - self.shift) / self.scale for p in phis]
        # Transition t: (φ_t, a_t) -> φ_{t+1}, next action a_{t+1} (zero after the last step).
        state = np.concatenate([p[:-1] for p in phis])
        nxt = np.concatenate([p[1:] for p in phis])
        action = np.concatenate([r.actions for r in rollouts])
        next_action = np.concatenate(
            [np.concatenate([r.actions[1:], np.zeros_like(r.actions[:1])]) for r in rollouts]
        )
        last = np.concatenate([np.arange(len(r.actions)) == len(r.actions) - 1 for r in rollouts])
        data = {
            "state": state,
            "action": action,
            "next_state": nxt,
            "next_action": next_action,
            "next_goal_feat": nxt,
            "discount": np.where(last, 0.0, self.config.discount).astype(np.float32),
            "mask": np.ones(len(state), np.float32),
        }
        data = {k: jnp.asarray(v, f32) for k, v in data.items()}
        self.params, self.losses = _train_fb(
            self.config, data, self.steps, self.batch_size, self.lr, jax.random.key(self.seed)
        )

    def episode_rewards(self, rollouts: Sequence[Rollout]) -> list[np.ndarray]:
        if self.params is None:
            raise RuntimeError("FBTerm.fit must run before episode_rewards")
        goal = (self.goal_feature - self.shift) / self.scale
        z = fb.goal_z(self.params, self.config, jnp.asarray(goal, f32))
        q = jax.jit(lambda s, a: fb.fb_reward(self.params, self.config, s, a, z))
        return [
            np.asarray(
                q(
                    jnp.asarray((self._phi(r)[:-1] - self.shift) / self.scale, f32),
                    jnp.asarray(r.actions),
                )
            )
            for r in rollouts
        ]


def _train_fb(
    config: fb.FBConfig,
    data: dict[str, jax.Array],
    steps: int,
    batch_size: int,
    lr: float,
    key: jax.Array,
) -> tuple[dict, np.ndarray]:
    """Adam on the FB loss over uniform minibatches of a fixed transition set; soft targets."""
    n, state_dim = data["state"].shape
    params = fb.init_fb(
        key, config, state_dim, data["action"].shape[1], data["next_goal_feat"].shape[1]
    )
    optimizer = optax.adam(lr)

    def step(carry, key):
        params, target, opt_state = carry
        k_idx, k_z = jax.random.split(key)
        idx = jax.random.randint(k_idx, (batch_size,), 0, n)
        params, target, opt_state, loss = fb.train_step(
            params, target, opt_state, optimizer, config, {k: v[idx] for k, v in data.items()}, k_z
        )
        return (params, target, opt_state), loss

    @jax.jit
    def train(params, key):
        carry, losses = jax.lax.scan(
            step, (params, params, optimizer.init(params)), jax.random.split(key, steps)
        )
        return carry[0], losses

    params, losses = train(params, jax.random.fold_in(key, 1))
    return params, np.asarray(losses)


class VLMRMTerm:
    """VLM-RM's reward of each arriving frame: index t holds the reward of frame t + 1."""

    def __init__(self, reward: Callable[[jax.Array], jax.Array], name: str):
        self.reward, self.name = reward, name

    def episode_rewards(self, rollouts: Sequence[Rollout]) -> list[np.ndarray]:
        return [
            np.concatenate(
                [
                    np.asarray(self.reward(jnp.asarray(r.frames[i : i + 64])))
                    for i in range(1, len(r.frames), 64)
                ]
            )
            for r in rollouts
        ]


class TADPoLeTerm:
    """TADPoLe's reward of each arriving frame (index t: frame t + 1), one noise level per
    episode and fresh draws per frame, as online (seeded: the same rollouts score the same)."""

    name = "tadpole"

    def __init__(self, reward: Callable, config, seed: int = 0):
        self.reward, self.config, self.seed = reward, config, seed

    def episode_rewards(self, rollouts: Sequence[Rollout]) -> list[np.ndarray]:
        from genreward_jax.rewards.tadpole import draw_noise_levels

        key = jax.random.key(self.seed)
        out = []
        for rollout in rollouts:
            key, level_key = jax.random.split(key)
            level = draw_noise_levels(
                level_key, 1, self.config.noise_base, self.config.noise_range
            )[0]
            rewards = []
            for i in range(1, len(rollout.frames), 16):
                frames = jnp.asarray(rollout.frames[i : i + 16])
                key, step_key = jax.random.split(key)
                t = jnp.full(frames.shape[0], level, jnp.int32)
                rewards.append(np.asarray(self.reward(frames, t, step_key)["reward"]))
            out.append(np.concatenate(rewards))
        return out


def tadpole_terms(goal_file: str, goal: GoalFile, options) -> list:
    """TADPoLe at the release's settings; none for a goal without the TADPoLe section."""
    from genreward_jax.rewards.tadpole_rewards import TADPoLeConfig, tadpole_reward_fn

    if goal.tadpole_context is None:
        print(f"{goal_file}: no TADPoLe section, no TADPoLe row (remake the goal)", flush=True)
        return []
    config = TADPoLeConfig(goal_file=goal_file)
    reward = tadpole_reward_fn(goal_file, goal, config)
    return [TADPoLeTerm(reward, config)]


def genreward_terms(goal_file: str, goal: GoalFile, options) -> list:
    """Every video variant (each goal pace of the progress variants) and the FB reward (DINOv3
    goal space with and without input standardisation; the state control when the goal stores
    states)."""
    vae = load_vae_encoder(encoder_folder(goal_file, goal, "vae"))
    dino = load_dinov3(encoder_folder(goal_file, goal, "dinov3"))
    encode_mean = latent_mean_fn(vae)
    dino_fn = pooled_feature_fn(dino)

    def pace(name: str) -> int:
        if name == "goal":
            return goal.duration_steps or options.time_limit
        return options.time_limit if name == "episode" else int(name)

    terms = []
    for variant in options.variants:
        paces = (
            sorted({pace(p) for p in options.goal_steps})
            if variant.startswith("progress")
            else [options.time_limit]
        )
        terms += [
            VideoTerm(encode_mean, goal, variant, options.interval, options.time_limit, d)
            for d in paces
        ]
    config = fb.FBConfig(z_dim=options.fb_z_dim, hidden=options.fb_hidden)
    common = dict(config=config, steps=options.fb_steps, lr=options.fb_lr, seed=options.seed)
    goal_dino = np.asarray(dino_fn(jnp.asarray(goal.keyframe)[None]))[0]
    for standardise in (True, False):
        terms.append(
            FBTerm(
                "dino",
                goal_dino,
                standardise=standardise,
                features=lambda frames: np.asarray(dino_fn(jnp.asarray(frames))),
                **common,
            )
        )
    if goal.states is not None:
        terms.append(FBTerm("state", goal.states[goal.keyframe_index], **common))
    return terms


def vlmrm_terms(goal_file: str, goal: GoalFile, options) -> list:
    """VLM-RM at --vlmrm_lambda and at λ = 0 (the plain CLIP cosine to the goal prompt); none
    for a goal without the VLM-RM section."""
    from genreward_jax.rewards.vlmrm_rewards import vlmrm_reward_fn

    if not goal.has_vlmrm:
        print(f"{goal_file}: no VLM-RM section, no VLM-RM rows (remake the goal)", flush=True)
        return []
    terms = []
    for lam in dict.fromkeys((options.vlmrm_lambda, 0.0)):
        try:
            reward, _ = vlmrm_reward_fn(goal_file, goal, lam)
        except GoalFileError as error:  # e.g. CLIP weights not in a folder the tower can load
            print(f"no VLM-RM rows: {error}", flush=True)
            return []
        terms.append(VLMRMTerm(reward, f"vlmrm λ={lam:g}" + (" (CLIP cosine)" if lam == 0 else "")))
    return terms


class RoboCLIPTerm:
    """RoboCLIP's episode score at the last index, zero elsewhere."""

    name = "roboclip"

    def __init__(self, goal_file: str):
        from genreward_jax.rewards.roboclip_rewards import RoboCLIPConfig, RoboCLIPRewards

        self.model = RoboCLIPRewards(
            RoboCLIPConfig(
                goal_file=goal_file, env_reward=False, reward_scaling="paper", weight=1.0
            ),
            num_envs=1,
            image_size=0,
        )

    def episode_rewards(self, rollouts: Sequence[Rollout]) -> list[np.ndarray]:
        from genreward_jax.rewards.roboclip import kept_step

        out = []
        for rollout in rollouts:
            kept = rollout.frames[kept_step(np.arange(len(rollout.frames)), self.model.stride)]
            rewards = np.zeros(len(rollout.actions), np.float32)
            rewards[-1] = self.model.score(kept)
            out.append(rewards)
        return out


def roboclip_terms(goal_file: str, goal: GoalFile, options) -> list:
    """RoboCLIP's score; none for a goal without the RoboCLIP section."""
    del options
    if goal.roboclip_target is None:
        print(f"{goal_file}: no RoboCLIP section, no RoboCLIP row (remake the goal)", flush=True)
        return []
    return [RoboCLIPTerm(goal_file)]
