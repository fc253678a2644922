"""TensorBoard event files of scalars, written without tensorboardX.

tensorboardX's writer imports torch whenever torch is installed (2.3 s per process here), and
the training processes keep torch out: every frozen model they run is a Flax port. Scalars need
only a few protobuf fields, written here by hand.

An event file is a sequence of TFRecords: the payload's length (uint64, little endian), the
masked CRC-32C of those 8 bytes, the payload, the masked CRC-32C of the payload. Each payload is
a serialised ``tensorboard.Event``: wall_time (field 1, double), step (2, int64) and one of
file_version (3, string: 'brain.Event:2' in a file's first event), summary (5) holding
Summary.Value entries of tag (1, string) and simple_value (2, float), or session_log (7) whose
status START (1) tells TensorBoard to drop the events of earlier files from that step on (a
resumed run's purge step).
"""

from __future__ import annotations

import itertools
import os
import socket
import struct
import time
from collections.abc import Mapping

_CRC32C_POLY = 0x82F63B78  # Castagnoli, reflected


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (_CRC32C_POLY if crc & 1 else 0)
        table.append(crc)
    return table


_TABLE = _crc32c_table()
_FILE_NUMBERS = itertools.count()  # two writers opened in one second get their own files


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of data, as TFRecord framing uses."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC: rotate right by 15 bits, add a constant."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord(payload: bytes) -> bytes:
    """One TFRecord: length, its masked CRC, payload, the payload's masked CRC."""
    length = struct.pack("<Q", len(payload))
    return (
        length
        + struct.pack("<I", masked_crc32c(length))
        + payload
        + struct.pack("<I", masked_crc32c(payload))
    )


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # int64 fields encode negatives as ten-byte two's complement
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _field(number: int, wire_type: int) -> bytes:
    return _varint((number << 3) | wire_type)


def _length_delimited(number: int, data: bytes) -> bytes:
    return _field(number, 2) + _varint(len(data)) + data


def event(
    wall_time: float,
    step: int,
    *,
    file_version: str | None = None,
    scalars: Mapping[str, float] | None = None,
    session_start: bool = False,
) -> bytes:
    """A serialised Event with exactly one of file_version, scalars (a Summary with one
    simple_value per tag) or session_start (SessionLog status START)."""
    if sum((file_version is not None, scalars is not None, session_start)) != 1:
        raise ValueError("an event holds one of file_version, scalars or session_start")
    out = _field(1, 1) + struct.pack("<d", wall_time) + _field(2, 0) + _varint(step)
    if file_version is not None:
        return out + _length_delimited(3, file_version.encode())
    if session_start:
        return out + _length_delimited(7, _field(1, 0) + _varint(1))
    values = b"".join(
        _length_delimited(
            1,
            _length_delimited(1, tag.encode()) + _field(2, 5) + struct.pack("<f", value),
        )
        for tag, value in scalars.items()
    )
    return out + _length_delimited(5, values)


class ScalarEventWriter:
    """Appends scalar summaries to a new event file in ``logdir`` (TensorBoard reads every
    ``events.out.tfevents.*`` file of a directory). ``purge_step`` (a resumed run's checkpoint
    step) makes TensorBoard drop what earlier files logged from that step on."""

    def __init__(self, logdir: str, purge_step: int | None = None):
        os.makedirs(logdir, exist_ok=True)
        host, pid, number = socket.gethostname(), os.getpid(), next(_FILE_NUMBERS)
        name = f"events.out.tfevents.{int(time.time())}.{host}.{pid}.{number}"
        self._file = open(os.path.join(logdir, name), "ab")
        start = 0 if purge_step is None else purge_step
        self._file.write(tfrecord(event(time.time(), start, file_version="brain.Event:2")))
        if purge_step is not None:
            self._file.write(tfrecord(event(time.time(), purge_step, session_start=True)))
        self._file.flush()

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        """One event holding every tag's value at ``step``."""
        if values:
            self._file.write(tfrecord(event(time.time(), step, scalars=values)))

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()
