"""Headers and row slices of arrays in an uncompressed .npz, read without loading the rest.

An uncompressed .npz (``np.savez``, ``sp.save_npz(..., compressed=False)``) is a zip archive
whose members are stored ``.npy`` files: each member's bytes sit in the archive as they are,
so rows [start, stop) of a C-ordered array are one contiguous run of bytes at a known
offset. Reading them costs the slice, not the array.
"""

from __future__ import annotations

import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

# A zip local file header: signature, versions, flags, method, time, date, CRC, sizes, then
# the name and extra-field lengths (the name and extra field follow the 30 fixed bytes).
_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")
_LOCAL_SIGNATURE = b"PK\x03\x04"


class NpzReadError(ValueError):
    """An array of an .npz that cannot be read in part: compressed, missing, or out of range."""


@dataclass(frozen=True)
class ArrayHeader:
    """What a stored .npy member holds, and where its data starts in the archive file."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    data_offset: int  # bytes from the start of the .npz file to the array's first element

    @property
    def row_bytes(self) -> int:
        """Bytes of one row (one element for a 1-D array)."""
        return int(self.dtype.itemsize * np.prod(self.shape[1:], dtype=np.int64))


def read_headers(path: Path) -> dict[str, ArrayHeader]:
    """Shape, dtype and data offset of every array in an uncompressed .npz."""
    with zipfile.ZipFile(path) as archive, open(path, "rb") as raw:
        return {header.name: header for header in (
            _member_header(path, raw, info) for info in archive.infolist()
            if info.filename.endswith(".npy"))}


def read_header(path: Path, name: str) -> ArrayHeader:
    """Shape, dtype and data offset of one array (``name`` without ``.npy``)."""
    with zipfile.ZipFile(path) as archive, open(path, "rb") as raw:
        return _member_header(path, raw, _member(path, archive, name))


def read_rows(path: Path, name: str, start: int, stop: int) -> np.ndarray:
    """Rows [start, stop) of one array; the other rows and arrays are never read."""
    header = read_header(path, name)
    if not header.shape:
        raise NpzReadError(f"{name!r} in {path} is a scalar (shape ()): it has no rows to slice")
    if header.fortran_order and len(header.shape) > 1:
        raise NpzReadError(f"{name!r} in {path} is stored in Fortran order: its rows are not "
                           "contiguous; save it C-ordered (np.ascontiguousarray) to slice it")
    rows = header.shape[0]
    if not 0 <= start <= stop <= rows:
        raise NpzReadError(f"rows [{start}, {stop}) are outside {name!r} in {path}, which "
                           f"has {rows} rows: need 0 <= start <= stop <= {rows}")
    count = (stop - start) * (header.row_bytes // header.dtype.itemsize)
    with open(path, "rb") as raw:
        raw.seek(header.data_offset + start * header.row_bytes)
        data = np.fromfile(raw, dtype=header.dtype, count=count)
    if len(data) != count:
        raise NpzReadError(f"{path} ends inside {name!r}: the file is truncated")
    return data.reshape((stop - start, *header.shape[1:]))


def _member(path: Path, archive: zipfile.ZipFile, name: str) -> zipfile.ZipInfo:
    try:
        return archive.getinfo(f"{name}.npy")
    except KeyError:
        held = sorted(n.removesuffix(".npy") for n in archive.namelist())
        raise NpzReadError(f"{path} holds no array {name!r} (it holds {', '.join(held)})"
                           ) from None


def _member_header(path: Path, raw: BinaryIO, info: zipfile.ZipInfo) -> ArrayHeader:
    name = info.filename.removesuffix(".npy")
    if info.compress_type != zipfile.ZIP_STORED:
        raise NpzReadError(
            f"{name!r} in {path} is compressed: its rows cannot be read in part. Save the "
            "archive uncompressed (np.savez, sp.save_npz(..., compressed=False)), or load "
            "it whole with np.load")
    raw.seek(info.header_offset)
    fixed = raw.read(_LOCAL_HEADER.size)
    if len(fixed) != _LOCAL_HEADER.size or fixed[:4] != _LOCAL_SIGNATURE:
        raise NpzReadError(f"{path} is not a readable zip archive at {name!r}'s local header")
    name_len, extra_len = _LOCAL_HEADER.unpack(fixed)[-2:]
    raw.seek(info.header_offset + _LOCAL_HEADER.size + name_len + extra_len)
    version = np.lib.format.read_magic(raw)
    if version == (1, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(raw)
    elif version == (2, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(raw)
    else:
        raise NpzReadError(f"{name!r} in {path} is a .npy of format {version}; row slices "
                           "read formats 1.0 and 2.0 (what np.save writes)")
    if dtype.hasobject:
        raise NpzReadError(f"{name!r} in {path} holds Python objects (pickled): it has no "
                           "fixed-size rows to read")
    return ArrayHeader(name=name, shape=tuple(int(d) for d in shape), dtype=dtype,
                       fortran_order=bool(fortran_order), data_offset=raw.tell())
