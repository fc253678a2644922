"""reuse_scratch_memory: a jitted CPU program's scratch buffer is reused between calls instead
of being faulted in anew (it changes process-wide settings, so each case runs in its own
process)."""

import json
import platform
import statistics
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="the settings are glibc malloc's",
)

# A program whose only large buffer is a temporary: a loop's [4096, 4096] carry (64 MiB) that
# starts as a product, reduced to a scalar. Prints the scratch size and the page faults of each
# later call.
_CHILD = """
import json, resource, sys
import jax, jax.numpy as jnp
from genreward_jax.host_memory import reuse_scratch_memory

applied = reuse_scratch_memory() if sys.argv[1] == "reuse" else False
step = jax.jit(lambda a, b: jax.lax.fori_loop(0, 2, lambda i, x: jnp.sin(x), a @ b).sum())
a = jnp.ones((4096, 32), jnp.float32)
b = jnp.full((32, 4096), 0.01, jnp.float32)
compiled = step.lower(a, b).compile()
late = reuse_scratch_memory()  # the backend exists now: no effect
for _ in range(3):  # the heap settles within a few calls
    float(compiled(a, b))
faults = []
for _ in range(5):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    value = float(compiled(a, b))
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({
    "applied": applied,
    "late": late,
    "async_dispatch": jax.config.read("jax_cpu_enable_async_dispatch"),
    "scratch_pages": compiled.memory_analysis().temp_size_in_bytes // resource.getpagesize(),
    "faults": faults,
    "value": value,
}))
"""


def _run(mode: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, mode], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_scratch_memory_is_reused_between_calls():
    default, reused = _run("default"), _run("reuse")
    assert default["scratch_pages"] >= 8192  # the 64 MiB product is a temporary
    assert reused["applied"] and reused["async_dispatch"] is False
    assert not reused["late"] and not default["late"]
    assert default["async_dispatch"] is True
    # Without the settings every call faults its scratch in anew; with them a typical call
    # almost nothing (the heap may still grow once while Python's own allocations settle).
    assert min(default["faults"]) > default["scratch_pages"] // 2, default
    assert statistics.median(reused["faults"]) < reused["scratch_pages"] // 20, reused
    assert reused["value"] == default["value"]
