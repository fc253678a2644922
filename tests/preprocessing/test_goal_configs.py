"""Every goal flagfile in configs/ parses with make_goals.py's flags into the GoalConfig we mean
(in a subprocess: make_goals defines --task/--seed like the training app does)."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = """
import glob, json, os, sys
sys.path.insert(0, os.getcwd())
from absl import flags
from preprocessing import make_goals
out = {}
for path in sorted(glob.glob('configs/goals_*.cfg')):
    values = flags.FLAGS
    values.unparse_flags()
    values(['make_goals', '--flagfile=' + path])
    cfg = make_goals.config_from_flags()
    out[os.path.basename(path)[:-4]] = {
        'task': cfg.task, 'source': cfg.goal_source, 'prompts': list(cfg.keyframe_prompts),
        'condition_image': cfg.condition_image, 'placements': cfg.placements}
print(json.dumps(out))
"""


def test_goal_configs_parse_with_task_keyframes_and_domains():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    configs = json.loads(result.stdout.strip().splitlines()[-1])
    from preprocessing.prompts import TASK_KEYFRAME_PROMPTS

    for name in ("pick_place", "pick_out_of_hole", "bin_picking", "shelf_place", "disassemble"):
        cfg = configs[f"goals_{name}"]
        assert cfg["source"] == "generate" and cfg["condition_image"] is None
        assert cfg["prompts"] == list(TASK_KEYFRAME_PROMPTS[cfg["task"]])
    for domain in ("rt1", "bridge", "rlbench"):
        cfg = configs[f"goals_pick_place_{domain}"]
        assert cfg["task"] == "pick-place-v3" and cfg["source"] == "generate"
        assert cfg["condition_image"] == f"data/domains/{domain}.png"
    assert configs["goals_pick_place_tiny"]["source"] == "scripted"
