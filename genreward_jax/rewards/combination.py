"""Eq. 10, the reward GenReward's agent learns: r = r_env + α·r_video + β·r_fb, in one place.

Where each term comes from:
  * r_env: the environment's reward (dense, or sparse every 64 steps: ``envs/``), zero with
    --noenv_reward; computed by the env and passed through ``GoalRewards.process``;
  * α·r_video (Eq. 5): the VAE-latent cosine of the agent's last window with the goal video
    (``video.py``), scaled by ``GoalRewards._video_term`` (``paper``: α times the raw cosine;
    ``calibrated``: standardised, α·σ_env·I per window), at the step that closes a window;
  * β·r_fb (Eq. 9): F(s, a, z_g)ᵀ z_g of the FB representation trained in the agent's own step
    (``fb.fb_reward``, scaled in ``fb_extra_loss.FBExtraLoss``). F and B change while they
    train, so this term is not stored in replay: the agent adds it inside its train step, to the
    reward of the imagined and replayed transition it belongs to (``--fb_reward_target=actor``)
    or to the reward head's target (``reward_head``, Eq. 10 read literally).

``replay_reward`` is therefore Eq. 10 without its FB term, and the train step completes it.
"""

from __future__ import annotations

import numpy as np


def replay_reward(env_term: np.ndarray, video_term: np.ndarray) -> np.ndarray:
    """r_env + α·r_video [N] (Eq. 10 up to β·r_fb, which the train step adds): the reward
    stored in replay and learned by the reward head."""
    return (np.asarray(env_term) + np.asarray(video_term)).astype(np.float32)
