"""Every training flagfile in configs/ parses with the main app's flags, alone and with an
ablation added after it."""

import copy
import glob
import os

import pytest
from absl import flags

import genreward_jax.main  # noqa: F401  (defines the flags)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TASK_CONFIGS = ["pick_place", "pick_out_of_hole", "bin_picking", "shelf_place", "disassemble"]


def parse(*flagfiles: str) -> flags.FlagValues:
    values = copy.deepcopy(flags.FLAGS)  # parsed on a copy: the global FLAGS stay untouched
    values.unparse_flags()
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        values(["main", *[f"--flagfile=configs/{f}.cfg" for f in flagfiles]])
    finally:
        os.chdir(cwd)
    return values


@pytest.mark.parametrize("task", TASK_CONFIGS)
def test_task_configs_name_their_goal_and_task(task):
    values = parse(task)
    assert values.goal_file == f"goals/{values.task}-v3/goal.npz"
    assert values.obs_keys == ["image"] and values.time_limit == 256
    assert (values.alpha, values.beta, values.video_interval) == (0.5, 0.5, 128)
    assert values.reward_scaling == "calibrated" and values.fb_reward_target == "actor"
    assert values.placement == "goal"


def test_release_literal_restores_the_release_formula():
    values = parse("pick_place", "release_literal")
    assert (values.alpha, values.beta, values.reward_scaling) == (0.01, 1e-5, "paper")
    assert (values.video_variant, values.fb_reward_target, values.placement) == (
        "paper",
        "reward_head",
        "random",
    )


@pytest.mark.parametrize(
    "ablation,check",
    [
        ("ablation_no_video_reward", lambda v: not v.video_reward and v.fb_reward),
        ("ablation_no_fb_reward", lambda v: v.video_reward and not v.fb_reward),
        ("ablation_generated_only", lambda v: not v.env_reward),
        ("ablation_sparse", lambda v: v.reward_mode == "sparse" and v.sparse_interval == 64),
        ("baseline_dreamerv3", lambda v: not v.goal_file),
        (
            "baseline_vlmrm",
            lambda v: (
                v.reward_model == "vlmrm"
                and v.vlmrm_lambda == 0.5
                and v.goal_file == "goals/pick-place-v3/goal.npz"
                and v.placement == "goal"
            ),
        ),
        (
            "baseline_roboclip",
            lambda v: (
                v.reward_model == "roboclip"
                and v.roboclip_render_size == 480
                and v.placement == "goal"
            ),
        ),
        (
            "baseline_tadpole",
            lambda v: (
                v.reward_model == "tadpole"
                and (v.tadpole_noise_base, v.tadpole_noise_range) == (500, 100)
                and (v.tadpole_align_scale, v.tadpole_recon_scale) == (2000, 200)
                and v.tadpole_render_size == 448
                and v.placement == "goal"
            ),
        ),
    ],
)
def test_ablations_override_a_task_config(ablation, check):
    assert check(parse("pick_place", ablation))


def test_every_training_config_is_covered():
    names = {os.path.basename(p)[:-4] for p in glob.glob(os.path.join(ROOT, "configs/*.cfg"))}
    training = {n for n in names if not n.startswith("goals_")}
    covered = {
        *TASK_CONFIGS,
        "genreward_paper",
        "quickstart",
        "ablation_no_video_reward",
        "ablation_no_fb_reward",
        "ablation_generated_only",
        "ablation_sparse",
        "baseline_dreamerv3",
        "baseline_vlmrm",
        "baseline_roboclip",
        "baseline_tadpole",
        "release_literal",
        "pick_place_cpu",
    }
    assert training == covered
    for name in ("genreward_paper", "quickstart"):
        parse(name)
    cpu = parse("pick_place_cpu")
    assert (cpu.preset, cpu.obs_keys, cpu.reward_scaling) == ("1m", ["state"], "calibrated")


def test_fb_reads_the_decoded_state_when_the_agent_sees_it():
    from genreward_jax.rewards.plugins import fb_state_input

    assert parse("pick_place_cpu").fb_state_input == "auto"
    assert fb_state_input("auto", ("state",)) == "decoded"
    assert fb_state_input("auto", ("image",)) == "latent"  # nothing to decode: the latent
    assert fb_state_input("latent", ("state",)) == "latent"
