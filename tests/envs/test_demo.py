"""The environment demo: expert episode frames and the mp4 it writes."""

import imageio.v2 as imageio
import numpy as np

from genreward_jax.envs import EnvConfig, MetaWorldEnv
from genreward_jax.envs.demo import run_expert_episode, write_video


def test_expert_episode_video_round_trip(tmp_path):
    with MetaWorldEnv(EnvConfig("pick-place", seed=0, size=48, time_limit=12)) as env:
        frames, total, _ = run_expert_episode(env)
    assert frames.shape == (13, 48, 48, 3) and frames.dtype == np.uint8
    assert total > 0 and np.abs(frames[0].astype(int) - frames[-1]).mean() > 0.5  # robot moved
    path = tmp_path / "videos" / "demo.mp4"
    write_video(str(path), frames, fps=10)
    reader = imageio.get_reader(str(path))
    read_back = np.stack([frame for frame in reader])  # list() trips on the reader's len=inf
    reader.close()
    assert read_back.shape == frames.shape
    assert np.abs(read_back.astype(int) - frames).mean() < 12  # lossy codec, same pictures
    assert [p.name for p in path.parent.iterdir()] == ["demo.mp4"]  # no temp file left
