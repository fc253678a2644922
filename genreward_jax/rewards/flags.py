"""absl flags of GenReward's generated rewards (the goal, α, β, FB) and the configs they build.

Without --goal_file the run is plain DreamerV3 on the environment reward.
"""

from __future__ import annotations

from absl import flags

from genreward_jax.rewards.fb import FBConfig
from genreward_jax.rewards.goal_rewards import RewardConfig

flags.DEFINE_string('goal_file', None, 'Goal .npz from preprocessing/make_goals.py. Unset: '
                    'plain DreamerV3 on the environment reward.')
flags.DEFINE_float('alpha', 0.01, 'Weight α of the video reward (the release: 0.01).')
flags.DEFINE_float('beta', 1e-5, 'Weight β of the normalised FB reward (the release: 1e-5 on '
                   'the raw FB value; ours is in units of its standard deviation over replay).')
flags.DEFINE_bool('video_reward', True, 'Add α·r_video (ablation: --novideo_reward).')
flags.DEFINE_bool('fb_reward', True, 'Train FB and add β·r_fb (ablation: --nofb_reward).')
flags.DEFINE_bool('env_reward', True, 'Add the environment reward (off: generated rewards only).')
flags.DEFINE_integer('video_interval', 128, 'Env steps per video-reward window.', lower_bound=1)
flags.DEFINE_integer('fb_train_steps', 100_000, 'Env steps during which F and B train; frozen '
                     'afterwards.', lower_bound=0)
flags.DEFINE_integer('fb_z_dim', 64, 'FB embedding size.', lower_bound=1)
flags.DEFINE_integer('fb_hidden', 512, 'FB hidden units.', lower_bound=1)
flags.DEFINE_float('fb_discount', 0.98, 'FB discount γ.', lower_bound=0.0, upper_bound=0.999)
flags.DEFINE_float('fb_lr', 1e-4, 'FB Adam learning rate.', lower_bound=0.0)
flags.DEFINE_float('fb_tau', 0.01, 'FB target-network update rate.', lower_bound=0.0,
                   upper_bound=1.0)
flags.DEFINE_enum('encoder_dtype', 'auto', ['auto', 'float32', 'bfloat16'],
                  'Compute dtype of the Flax VAE and DINOv3; auto = float32 on CPU, bfloat16 '
                  'on GPU/TPU.')

FLAGS = flags.FLAGS


def reward_config_from_flags(default_dtype: str) -> RewardConfig | None:
    """None without --goal_file; raises ValueError/FileNotFoundError on bad values."""
    if not FLAGS.goal_file:
        return None
    if not (FLAGS.video_reward or FLAGS.fb_reward or FLAGS.env_reward):
        raise ValueError('--noenv_reward, --novideo_reward and --nofb_reward leave no reward')
    dtype = default_dtype if FLAGS.encoder_dtype == 'auto' else FLAGS.encoder_dtype
    return RewardConfig(goal_file=FLAGS.goal_file, alpha=FLAGS.alpha,
                        video_reward=FLAGS.video_reward, env_reward=FLAGS.env_reward,
                        video_interval=FLAGS.video_interval, encoder_dtype=dtype)


def fb_config_from_flags() -> FBConfig:
    return FBConfig(z_dim=FLAGS.fb_z_dim, hidden=FLAGS.fb_hidden, discount=FLAGS.fb_discount,
                    lr=FLAGS.fb_lr, tau=FLAGS.fb_tau)
