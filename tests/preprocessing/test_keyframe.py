"""Keyframe: argmax of the prompt-averaged OpenCLIP cosine."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from genreward_jax.goals import load_goal
from preprocessing import keyframe, models
from tests.preprocessing.conftest import moving_square_video


def test_scores_match_a_separate_computation(file_goal, tiny_spec):
    """The goal's scores equal per-frame, per-prompt cosines computed here one at a time."""
    goal = load_goal(file_goal["goal"])
    clip = models.load_clip(tiny_spec)
    expected = np.zeros((len(goal.keyframe_prompts), goal.frames.shape[0]))
    with torch.no_grad():
        for p, prompt in enumerate(goal.keyframe_prompts):
            text = clip.model.encode_text(clip.tokenizer([prompt]))[0]
            for n, frame in enumerate(goal.frames):
                image = clip.model.encode_image(clip.preprocess(Image.fromarray(frame))[None])[0]
                expected[p, n] = torch.nn.functional.cosine_similarity(text, image, dim=0)
    np.testing.assert_allclose(goal.clip_scores_per_prompt, expected, atol=1e-5)
    np.testing.assert_allclose(goal.clip_scores, expected.mean(0), atol=1e-5)
    assert goal.keyframe_index == int(np.argmax(expected.mean(0)))


def test_picks_the_frame_the_prompt_was_built_to_match(tiny_spec):
    """Sets the text projection so the prompt's embedding IS frame j's image embedding."""
    clip = models.load_clip(tiny_spec)
    frames = np.random.default_rng(1).integers(0, 256, (12, 64, 64, 3), dtype=np.uint8)
    target = 7
    with torch.no_grad():
        images = torch.stack([clip.preprocess(Image.fromarray(f)) for f in frames])
        image_features = clip.model.encode_image(images)
        projection = clip.model.text_projection
        projection.copy_(torch.eye(*projection.shape))
        pooled = clip.model.encode_text(clip.tokenizer(["the goal"]))[0]  # pre-projection
        projection.copy_(torch.outer(pooled, image_features[target]) / pooled.dot(pooled))
    choice = keyframe.choose_keyframe(clip, frames, ["the goal"])
    assert choice.index == target
    assert abs(choice.scores[target] - 1.0) < 1e-4
    assert np.sort(choice.scores)[-2] < choice.scores[target] - 1e-5


def test_prompts_are_averaged_not_maxed(tiny_spec):
    clip = models.load_clip(tiny_spec)
    frames = moving_square_video(num_frames=10, height=64, width=64)
    prompts = ["a red robot", "a white block", "the table"]
    choice = keyframe.choose_keyframe(clip, frames, prompts)
    singles = np.stack([keyframe.choose_keyframe(clip, frames, [p]).scores for p in prompts])
    np.testing.assert_allclose(choice.scores_per_prompt, singles, atol=1e-6)
    assert choice.index == int(np.argmax(singles.mean(0)))
