"""Process-wide test settings: offscreen MuJoCo rendering before anything imports OpenGL."""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# One persistent XLA compilation cache per test session, inherited by every subprocess: the many
# end-to-end runs (main.py, sweeps, benchmarks) compile the same tiny agents, and a cached
# executable is the same binary, so exact-resume comparisons are unaffected.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="genreward-xla-")
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
# Subprocesses cache every executable, not only those that took over a second to compile: one
# that builds encoders or initialises parameters op by op otherwise recompiles hundreds of small
# programs an earlier process already compiled (the CLI end-to-end tests: about a third faster).
# This process keeps JAX's one-second threshold (set below, after the import): its own small
# programs stay in memory, and writing each of them to disk cost more than it saved.
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"

# torch._dynamo (loaded by diffusers/transformers) bundles its own LLVM, and so does Mesa's
# llvmpipe behind MuJoCo's EGL: importing torch._dynamo after a frame was rendered on a CPU
# segfaults the process, so load it first, before any test renders.
import torch._dynamo  # noqa: E402, F401


def pytest_configure(config):
    import jax

    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
