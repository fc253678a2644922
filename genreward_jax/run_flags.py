"""A run's resolved flags, written to <logdir>/flags.cfg: a flagfile that reruns the run
(``--flagfile=<logdir>/flags.cfg``) and that ``evaluate.py`` rebuilds the run from."""

from __future__ import annotations

import os
from collections.abc import Iterable

from genreward_jax.atomic import atomic_write

FLAGS_FILE = "flags.cfg"


def flags_to_string(flag_values, module_prefixes: Iterable[str] = ("genreward_jax",)) -> str:
    """The resolved values of our flags (not absl's own) in flagfile format, one per line."""
    lines = []
    for module, module_flags in sorted(flag_values.flags_by_module_dict().items()):
        name = module.replace("/", ".")
        if not any(prefix in name for prefix in module_prefixes) and module != "__main__":
            continue
        lines.append(f"# {module}")
        lines.extend(
            flag.serialize()
            for flag in sorted(module_flags, key=lambda f: f.name)
            if flag.serialize()
        )
    return "\n".join(lines) + "\n"


def write_flags(logdir: str, flag_values) -> str:
    path = os.path.join(logdir, FLAGS_FILE)
    atomic_write(path, flags_to_string(flag_values))
    return path
