"""Data files for end-to-end tests, written with polars."""

from __future__ import annotations

from pathlib import Path

import polars as pl


def write_ids_csv(path: Path, ids: list[int | None]) -> Path:
    pl.DataFrame({"id": ids}, schema={"id": pl.Int64}).write_csv(path)
    return path


def write_big_csv(path: Path, rows: int) -> Path:
    """A file big enough that validating it takes a noticeable while (a "slow run")."""
    frame = pl.DataFrame({"id": pl.arange(0, rows, eager=True)}).with_columns(
        (pl.col("id") * 7 % 1000).alias("amount"),
        pl.format("user{}@example.com", pl.col("id")).alias("email"),
    )
    frame.write_csv(path)
    return path


SLOW_VALIDATORS = """
      - {type: unique, columns: [email]}
      - {type: regex, column: email, pattern: "^user[0-9]+@example\\\\.(com|org)$"}
      - {type: unique, columns: [id, amount]}
"""
