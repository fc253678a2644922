"""Process-wide test settings: offscreen MuJoCo rendering before anything imports OpenGL."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# torch._dynamo (loaded by diffusers/transformers) bundles its own LLVM, and so does Mesa's
# llvmpipe behind MuJoCo's EGL: importing torch._dynamo after a frame was rendered on a CPU
# segfaults the process, so load it first, before any test renders.
import torch._dynamo  # noqa: E402, F401
