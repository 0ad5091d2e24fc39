"""A corpus of bad input files for the file trigger: what a landing directory really receives.

Every maker writes one file at the path it is given and returns that path. The corpora map a
short name to a maker; the names are listed in ``docs/reliability.md`` as the bad inputs tried.
"""

from __future__ import annotations

import io
import os
import random
import stat
from collections.abc import Callable
from pathlib import Path

import polars as pl

Maker = Callable[[Path], Path]

SPARSE_SIZE = 2 * 1024**3
"""The sparse files' apparent size: 2 GiB of holes, no disk blocks."""


def _bytes(data: bytes) -> Maker:
    def make(path: Path) -> Path:
        path.write_bytes(data)
        return path

    return make


def _sparse(head: bytes = b"") -> Maker:
    def make(path: Path) -> Path:
        with path.open("wb") as fh:
            fh.write(head)
            fh.truncate(SPARSE_SIZE)
        return path

    return make


def _good_parquet_bytes(rows: int = 1000) -> bytes:
    buf = io.BytesIO()
    frame = pl.DataFrame({"id": list(range(rows)), "name": [f"n{i}" for i in range(rows)]})
    frame.write_parquet(buf)
    return buf.getvalue()


def _random_bytes(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _flip_bits(data: bytes, seed: int) -> bytes:
    """``data`` with one to eight random bits flipped (the magic bytes at both ends kept)."""
    rng = random.Random(seed)
    out = bytearray(data)
    for _ in range(rng.choice([1, 2, 8])):
        i = rng.randrange(4, len(out) - 4)
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


CSV_CORPUS: dict[str, Maker] = {
    "zero_bytes": _bytes(b""),
    "header_only": _bytes(b"id,name\n"),
    "random_binary": _bytes(_random_bytes(1, 64 * 1024)),
    "invalid_utf8": _bytes(b"id,name\n1,\xff\xfe\xfa\n2,ok\n"),
    "unterminated_quote": _bytes(b'id,name\n1,"never closed\n2,x\n'),
    "ragged_rows": _bytes(b"id,name\n1,a,extra,fields\n2\n3,c\n"),
    "wrong_column": _bytes(b"other\n1\n2\n"),
    "non_numeric_ids": _bytes(b"id\nx\ny\n"),
    "nul_bytes_inside": _bytes(b"id,name\n1,a\x00b\n2,c\n"),
    "parquet_named_csv": _bytes(_good_parquet_bytes(100)),
    "sparse_2gb": _sparse(),
    "sparse_2gb_after_header": _sparse(b"id,name\n1,a\n"),
}
"""Bad CSV files: each must end as one run, with a clear error unless it is benign."""

BENIGN_CSV = frozenset({"header_only", "ragged_rows", "non_numeric_ids"})
"""Odd but readable CSVs: a verdict (success or failure), not an error."""

PARQUET_CORPUS: dict[str, Maker] = {
    "zero_bytes": _bytes(b""),
    "magic_only": _bytes(b"PAR1"),
    "truncated": _bytes(_good_parquet_bytes()[:-200]),
    "bad_footer_length": _bytes(_good_parquet_bytes()[:-8] + b"\xff\xff\xff\x7fPAR1"),
    "random_binary": _bytes(_random_bytes(2, 64 * 1024)),
    "csv_named_parquet": _bytes(b"id,name\n1,a\n"),
    "sparse_2gb": _sparse(),
}
"""Bad Parquet files: each must end as one run with a clear error."""

BIT_FLIPPED_PARQUET: dict[str, Maker] = {
    f"bit_flipped_{seed}": _bytes(_flip_bits(_good_parquet_bytes(), seed))
    for seed in (6, 51, 57, 95, 107, 116, 136, 175)
}
"""Parquet files with a few bits flipped: a flip may land where it changes nothing (a clean
verdict) or break the file (an error; some make polars panic inside). Never a crash or hang."""


def make_fifo(path: Path) -> Path:
    """A named pipe: opening it for reading would block until a writer comes."""
    os.mkfifo(path)
    return path


def make_char_device(path: Path) -> Path:
    """A character device node (/dev/null's numbers); needs CAP_MKNOD, i.e. root."""
    os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))
    return path
