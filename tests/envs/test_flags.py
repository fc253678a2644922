"""Environment flags: defaults, validation messages, per-env seeds."""

import pytest
from absl import flags

from genreward_jax.envs import EnvConfig
from genreward_jax.envs.flags import define_env_flags, derive_seed, env_configs_from_flags


def _parse(*argv):
    flag_values = flags.FlagValues()
    define_env_flags(flag_values)
    flag_values(["prog", *argv])
    return flag_values


def test_defaults_give_the_paper_setting():
    (config,) = env_configs_from_flags(_parse())
    assert config == EnvConfig(
        "pick-place-v3",
        seed=derive_seed(0, 0),
        camera="corner",
        size=64,
        action_repeat=1,
        time_limit=256,
        reward_mode="dense",
        sparse_interval=64,
        proprio=True,
    )


def test_each_env_gets_its_own_reproducible_seed():
    flag_values = _parse("--task=shelf_place", "--num_envs=4", "--seed=9", "--reward_mode=sparse")
    configs = env_configs_from_flags(flag_values)
    assert [c.task for c in configs] == ["shelf-place-v3"] * 4
    assert all(c.reward_mode == "sparse" for c in configs)
    seeds = [c.seed for c in configs]
    assert len(set(seeds)) == 4 and seeds == [c.seed for c in env_configs_from_flags(flag_values)]
    evaluation = env_configs_from_flags(flag_values, stream=1, num_envs=2, extra_size=96)
    assert not set(seeds) & {c.seed for c in evaluation}
    assert all(c.extra_size == 96 for c in evaluation)
    assert derive_seed(10, 0) != seeds[0]


def test_all_flags_reach_the_config():
    (config,) = env_configs_from_flags(
        _parse(
            "--camera=corner3",
            "--image_size=96",
            "--action_repeat=2",
            "--time_limit=100",
            "--sparse_interval=10",
            "--full_quality_render",
            "--noproprio",
        )
    )
    assert (config.camera, config.size, config.action_repeat, config.time_limit) == (
        "corner3",
        96,
        2,
        100,
    )
    assert config.sparse_interval == 10 and config.full_quality and not config.proprio


@pytest.mark.parametrize(
    "argv, message",
    [
        ("--task=pick-plac", "Valid names: .*pick-place-v3"),
        ("--reward_mode=dense_sparse", "dense\\|sparse"),
        ("--camera=front", "corner"),
        ("--image_size=0", "positive"),
        ("--time_limit=-1", "positive"),
        ("--action_repeat=0", "positive"),
        ("--sparse_interval=0", "positive"),
        ("--num_envs=0", "positive"),
        ("--seed=-5", r"range \[0, 4294967295\]"),
    ],
)
def test_bad_flags_are_clear_errors(argv, message):
    with pytest.raises(flags.IllegalFlagValueError, match=message):
        _parse(argv)


def test_bad_num_envs_override_is_a_clear_error():
    with pytest.raises(ValueError, match="num_envs must be a positive int"):
        env_configs_from_flags(_parse(), num_envs=0)
