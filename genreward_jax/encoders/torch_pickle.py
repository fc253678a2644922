"""Read a PyTorch ``torch.save`` checkpoint (``.bin``, ``.pt``) into numpy arrays, without torch.

Many diffusers folders (Stable Diffusion mirrors among them) ship ``diffusion_pytorch_model.bin``
beside or instead of the safetensors file. Since torch 1.6 such a file is a zip archive:
``<name>/data.pkl`` pickles the state dict, each tensor as a call of
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`` whose storage is a
persistent id ``('storage', <dtype>Storage, key, location, numel)`` naming the raw little-endian
bytes in ``<name>/data/<key>``. This module unpickles exactly that and nothing else: any other
global in the pickle is refused, so a checkpoint cannot run code (``torch.load``'s
``weights_only`` rule, stated as a whitelist). The pre-1.6 non-zip format is refused with a
message.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import pickle
import zipfile
from typing import Any

import numpy as np

# torch storage class -> numpy dtype of its bytes; bfloat16 is read as its 16 bits and widened.
_STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "DoubleStorage": np.dtype("<f8"),
    "BFloat16Storage": np.dtype("<u2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class TorchPickleError(ValueError):
    """The file is not a torch zip checkpoint of plain tensors."""


class _StorageType:
    def __init__(self, name: str):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]


@dataclasses.dataclass(frozen=True)
class _Storage:
    """A storage's elements (1-D), and whether they are bfloat16 bits to widen."""

    values: np.ndarray
    bfloat16: bool


def widen_bfloat16(bits: np.ndarray) -> np.ndarray:
    """bfloat16 values stored as their uint16 bits -> the same values in float32, exactly
    (numpy has no bfloat16)."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _rebuild_tensor(storage: _Storage, offset, size, stride, *unused) -> np.ndarray:
    del unused  # requires_grad, backward hooks, metadata
    values = storage.values
    view = np.lib.stride_tricks.as_strided(
        values[offset:], shape=tuple(size), strides=tuple(s * values.itemsize for s in stride)
    )
    array = np.array(view)  # own the memory, contiguous
    return widen_bfloat16(array) if storage.bfloat16 else array


def _rebuild_parameter(data, requires_grad, backward_hooks, *unused) -> np.ndarray:
    del requires_grad, backward_hooks, unused
    return data


_ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, path: str):
        super().__init__(file)
        self.archive, self.prefix, self.path = archive, prefix, path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise TorchPickleError(
            f"{self.path}: refuses to unpickle {module}.{name} (only plain tensors are read)"
        )

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise TorchPickleError(f"{self.path}: unknown persistent id {pid!r}")
        storage_type, key = pid[1], pid[2]
        if not isinstance(storage_type, _StorageType):
            raise TorchPickleError(f"{self.path}: storage of unknown type {storage_type!r}")
        raw = self.archive.read(f"{self.prefix}/data/{key}")
        values = np.frombuffer(raw, dtype=storage_type.dtype)
        return _Storage(values, storage_type.name == "BFloat16Storage")


def load_torch_checkpoint(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """{name: array} of a ``torch.save``-d state dict (bfloat16 widened to float32 exactly)."""
    path = str(path)
    if not zipfile.is_zipfile(path):
        raise TorchPickleError(
            f"{path}: not a zip-format torch checkpoint (the pre-1.6 format is not read; "
            "re-save it with torch.save, or use the safetensors file)"
        )
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise TorchPickleError(f"{path}: expected one */data.pkl, found {pickles}")
        prefix = pickles[0].removesuffix("/data.pkl")
        with archive.open(pickles[0]) as f:
            state = _Unpickler(f, archive, prefix, path).load()
    if not isinstance(state, dict) or not all(isinstance(v, np.ndarray) for v in state.values()):
        raise TorchPickleError(f"{path}: not a flat state dict of tensors")
    return {str(k): np.asarray(v) for k, v in state.items()}
