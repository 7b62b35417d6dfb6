"""Read (and write, for mirrors and tests) the idx format of LeCun's MNIST files.

An idx file is a big-endian header (two zero bytes, a type code, the number of dimensions, one uint32
per dimension) followed by the raw array. MNIST uses type 0x08 (unsigned byte) only.
"""

import gzip
import struct

import numpy as np
import numpy.typing as npt

UNSIGNED_BYTE = 0x08


class IdxFormatError(ValueError):
    pass


def parse_idx(data: bytes) -> npt.NDArray[np.uint8]:
    """Parse an idx file's bytes (gzip-compressed or not) into a uint8 array of its declared shape."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as error:
            raise IdxFormatError(f"corrupt gzip stream: {error}") from None
    if len(data) < 4 or data[:2] != b"\x00\x00":
        raise IdxFormatError("not an idx file (bad magic number)")
    type_code, ndim = data[2], data[3]
    if type_code != UNSIGNED_BYTE:
        raise IdxFormatError(f"unsupported idx element type 0x{type_code:02x} (MNIST uses 0x08)")
    header_size = 4 + 4 * ndim
    if ndim == 0 or len(data) < header_size:
        raise IdxFormatError("truncated idx header")
    shape = struct.unpack(f">{ndim}I", data[4:header_size])
    expected = int(np.prod(shape))
    if len(data) - header_size != expected:
        raise IdxFormatError(f"idx body has {len(data) - header_size} bytes, header promises {expected}")
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape)


def encode_idx(array: npt.NDArray[np.uint8], *, compress: bool = True) -> bytes:
    """The idx bytes of a uint8 array (gzip-compressed by default, as the canonical files are)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, UNSIGNED_BYTE, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    raw = header + array.tobytes()
    return gzip.compress(raw, mtime=0) if compress else raw
