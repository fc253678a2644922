"""Runs one of the project's command-line entry points in a subprocess, from the repository root,
as a user would (`python -m <module> <flags>`)."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_module(module: str, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    with warnings.catch_warnings():  # JAX (imported by other tests) warns on fork+exec
        warnings.filterwarnings("ignore", message="os.fork", category=RuntimeWarning)
        return subprocess.run(
            [sys.executable, "-m", module, *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
