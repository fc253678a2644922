"""Gives the official DreamerV3 of ``../shared/anchor_bench`` the process settings our trainer
makes by default (``genreward_jax/host_memory.py``: the train step's scratch memory reused
between updates), so that the side-by-side ratio can be separated into what those settings are
worth and what the implementation is:

    PYTHONPATH=$PWD/bench/official_same_memory:$PWD CONFIGS_SPEC="1m state 10" REPS=2 \\
        bash ../shared/anchor_bench/run_side_by_side.sh

Python imports ``sitecustomize`` at start-up from the first folder on its path that has one.
The side-by-side script runs our side with ``PYTHONPATH=.`` (replacing this path) and the
official side with the environment's, so only the official process loads this file; its
table helper runs on a Python without jax and skips it.
"""

try:
    from genreward_jax.host_memory import reuse_scratch_memory
except ImportError:
    pass
else:
    if not reuse_scratch_memory():
        raise SystemExit("bench/official_same_memory: the host-memory settings did not apply")
