"""GenReward's generated rewards: video-level (VAE latents) and frame-level (forward-backward)."""
