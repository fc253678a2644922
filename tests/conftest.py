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

# torch._dynamo (loaded by diffusers/transformers) bundles its own LLVM, and so does Mesa's
# llvmpipe behind MuJoCo's EGL: importing torch._dynamo after a frame was rendered on a CPU
# segfaults the process, so load it first, before any test renders.
import torch._dynamo  # noqa: E402, F401
