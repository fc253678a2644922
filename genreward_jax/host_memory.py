"""Keep the CPU train step's scratch memory mapped from one update to the next.

XLA:CPU gives every call of a compiled program one scratch buffer for its temporaries (the 1m
train step at batch 16 x 64: 290 MiB; 12m on images: 5.3 GiB), takes it from ``malloc`` and
frees it when the call ends. glibc serves a block that large with a fresh ``mmap`` and unmaps
it on ``free``, so every update faults in ~75k newly zeroed pages: at 1m, ~0.2 s of kernel time
per update, a fifth of the step's CPU time on the 2-core reference machine.

``reuse_scratch_memory`` makes the block come back from the heap instead, with two
process-wide settings:

1. jax runs CPU programs on the thread that calls them (``jax_cpu_enable_async_dispatch``
   off). The train step is called from the main thread, and the main thread's malloc arena is
   the heap; XLA's worker threads have arenas of their own that map large blocks regardless.
2. malloc neither maps blocks of its own (``M_MMAP_MAX`` 0) nor gives the heap's free top back
   to the system (``M_TRIM_THRESHOLD`` unlimited), so an update reuses the previous one's pages.

What it costs: the process keeps its peak heap (its resident memory does not shrink after a
large temporary is freed), and a jitted CPU call returns only once it has finished, which the
trainer's loop does not notice: it reads each train step's outputs right after the call.
Accelerator programs are not affected. ``--loop=async``'s learner thread calls the train step
from its own arena and keeps paying the page faults.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform

import jax

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
# mallopt's value is a C int; glibc converts M_TRIM_THRESHOLD's to size_t, so -1 reads as
# SIZE_MAX: never trim (the largest positive int, 2 GiB, is smaller than 12m's scratch).
_NEVER = -1


def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def reuse_scratch_memory() -> bool:
    """Apply both settings (see the module docstring); call it before the first JAX
    computation, while jax's CPU backend does not exist yet. Returns whether both took effect:
    not on a C library other than glibc, nor once the CPU backend was created (then nothing
    changes, with a warning)."""
    from jax._src import xla_bridge  # jax has no public test for a created backend

    if xla_bridge.backends_are_initialized():
        logging.warning(
            "reuse_scratch_memory: JAX's backends already exist, so CPU programs keep their "
            "asynchronous dispatch and the train step's scratch memory is mapped anew per call; "
            "call it before the first JAX computation"
        )
        return False
    libc = _glibc()
    if libc is None:
        return False
    if not (libc.mallopt(_M_MMAP_MAX, 0) and libc.mallopt(_M_TRIM_THRESHOLD, _NEVER)):
        logging.warning("reuse_scratch_memory: glibc refused mallopt; dispatch left asynchronous")
        return False
    jax.config.update("jax_cpu_enable_async_dispatch", False)
    return True
