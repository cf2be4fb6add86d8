"""Writing Paddle's LoDTensor files: the inverse of ``ernie_tiny.convert.paddle.read_lod_tensor``.

The product only reads Paddle checkpoints; the tests write them, to build Paddle-layout
fixtures from our own weights and to check the reader byte for byte.
"""

from __future__ import annotations

import os
import struct

import numpy as np

from ernie_tiny.convert.paddle import PADDLE_DTYPES
from ernie_tiny.io_utils import atomic_write_bytes

PADDLE_DTYPE_IDS = {np.dtype(dtype): code for code, dtype in PADDLE_DTYPES.items()}


def encode_varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # int64 negatives as protobuf does
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def lod_tensor_bytes(array: np.ndarray) -> bytes:
    """Paddle's ``SerializeToStream`` bytes for ``array`` (no LoD; dims as unpacked fields, as Paddle writes)."""
    array = np.asarray(array)  # not ascontiguousarray: it turns a 0-d array into 1-d
    if array.dtype not in PADDLE_DTYPE_IDS:
        raise ValueError(f"dtype {array.dtype} has no Paddle equivalent")
    desc = b"\x08" + encode_varint(PADDLE_DTYPE_IDS[array.dtype])
    desc += b"".join(b"\x10" + encode_varint(d) for d in array.shape)
    header = struct.pack("<IQI", 0, 0, 0) + struct.pack("<i", len(desc)) + desc
    return header + array.astype(array.dtype.newbyteorder("<")).tobytes(order="C")


def write_lod_tensor(path: str | os.PathLike, array: np.ndarray) -> None:
    atomic_write_bytes(path, lod_tensor_bytes(array))
