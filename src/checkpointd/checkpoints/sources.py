"""Data sources: turn a checkpoint's ``data_source`` config into a polars LazyFrame.

Files (csv, parquet, ndjson) are scanned lazily, so the validators read them
in a single pass; ``inline`` rows and ``kafka_batch`` records are already in
memory. ``load_frame`` is synchronous on purpose: the runner calls it in a
worker thread.

Choices worth knowing:

- ``path`` is a single file or a glob (``**`` recurses). A path that names an
  existing file is used as is, so a file whose name holds ``[`` or ``*``
  (handed over by ``{trigger.path}``) is not mistaken for a pattern.
- A 0-byte file is an error ("file is empty"); a CSV with only a header line
  is a frame of 0 rows.
- A csv or ndjson file with a NUL byte at its start, middle or end is an
  error ("not text"): it is binary, or a sparse file whose holes polars would
  otherwise parse as one endless line (a 2 GB hole takes ~20 GB of memory).
- Declared ``dtypes`` are schema overrides for csv and ndjson (the reader
  parses into them) and strict casts for parquet and in-memory rows. Strings
  become Date/Datetime/Time by parsing ISO 8601. A declared column the data
  lacks is an error for files; for ``inline`` and ``kafka_batch`` it becomes
  an all-null column, since a key absent from a JSON object means null.
- Scans defer some errors (a corrupt page, a value that does not parse as its
  declared dtype) until the query runs; ``validators.evaluate`` reports those
  as ``DataSourceError`` too.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from checkpointd.checkpoints._dtypes import cast_expr, parse_dtypes
from checkpointd.checkpoints._polars import POLARS_FAILURES, brief_error, list_names
from checkpointd.config.models import (
    CsvSource,
    DataSourceConfig,
    InlineSource,
    KafkaBatchSource,
    NdjsonSource,
    ParquetSource,
)
from checkpointd.errors import DataSourceError
from checkpointd.events import TriggerEvent

__all__ = ["describe_source", "fill_placeholders", "load_frame"]

_PLACEHOLDER = re.compile(r"\{trigger\.([A-Za-z_][A-Za-z0-9_]*)\}")

FileSource = CsvSource | ParquetSource | NdjsonSource


def fill_placeholders(cfg: DataSourceConfig, event: TriggerEvent | None) -> DataSourceConfig:
    """Replace every ``{trigger.NAME}`` in a file source's ``path`` with ``event.params[NAME]``.

    Sources without a path are returned unchanged. A placeholder the event
    cannot fill (no event at all, or no such param) is a ``DataSourceError``
    naming the placeholder and the trigger type.
    """
    if not isinstance(cfg, CsvSource | ParquetSource | NdjsonSource):
        return cfg
    names = _PLACEHOLDER.findall(cfg.path)
    if not names:
        return cfg
    if event is None:
        raise DataSourceError(
            f"data source path {cfg.path!r} needs {{trigger.{names[0]}}}, but this run has no "
            "trigger event; run it from a trigger that provides it"
        )
    for name in names:
        if name not in event.params:
            offered = ", ".join(sorted(event.params)) or "none"
            raise DataSourceError(
                f"data source path {cfg.path!r} needs {{trigger.{name}}}, but the "
                f"{event.type!r} trigger provides no {name!r} (it provides: {offered})"
            )
    path = _PLACEHOLDER.sub(lambda m: str(event.params[m.group(1)]), cfg.path)
    return cfg.model_copy(update={"path": path})


def describe_source(cfg: DataSourceConfig) -> str:
    """A short name for a data source in messages: ``parquet data/*.parquet``."""
    if isinstance(cfg, CsvSource | ParquetSource | NdjsonSource):
        return f"{cfg.type} {cfg.path}"
    if isinstance(cfg, InlineSource):
        return f"inline rows ({len(cfg.rows)})"
    return "kafka_batch records"


def load_frame(cfg: DataSourceConfig, event: TriggerEvent | None) -> pl.LazyFrame:
    """The data a checkpoint validates, as a LazyFrame (sync; run it in a worker thread).

    Raises ``DataSourceError`` naming the source and the cause: no file
    matches, a file is empty or unreadable, a file is not valid parquet, a
    declared dtype is unknown or names a column the data lacks, Kafka records
    are missing.
    """
    cfg = fill_placeholders(cfg, event)
    try:
        dtypes = parse_dtypes(cfg.dtypes)
    except ValueError as exc:
        raise DataSourceError(f"{describe_source(cfg)}: dtypes: {exc}") from None
    if isinstance(cfg, InlineSource):
        return _from_records(cfg.rows, dtypes, "inline rows").lazy()
    if isinstance(cfg, KafkaBatchSource):
        if event is None or event.records is None:
            trigger = (
                "this run has no trigger event"
                if event is None
                else (f"the {event.type!r} trigger supplied none")
            )
            raise DataSourceError(
                f"kafka_batch data source needs the records of a Kafka batch, but {trigger}"
            )
        return _from_records(event.records, dtypes, "kafka_batch records").lazy()
    return _scan_files(cfg, dtypes)


# ---------------------------------------------------------------- files


def _scan_files(cfg: FileSource, dtypes: dict[str, pl.DataType]) -> pl.LazyFrame:
    paths = _expand(cfg.path)
    what = describe_source(cfg)
    if not isinstance(cfg, ParquetSource):
        for path in paths:
            _require_text(path, cfg.type)

    def schema_of(frame: pl.LazyFrame) -> pl.Schema:
        # Reading the schema now surfaces a file that is not what it claims
        # to be while the error can still name the source.
        try:
            return frame.collect_schema()
        except POLARS_FAILURES as exc:
            raise DataSourceError(
                f"{what}: cannot read {_which(paths)}: {brief_error(exc)}"
            ) from exc

    if isinstance(cfg, CsvSource):
        # The CSV reader ignores overrides of absent columns; the check below catches them.
        frame = pl.scan_csv(
            paths,
            separator=cfg.separator,
            has_header=cfg.has_header,
            quote_char=cfg.quote_char,
            null_values=cfg.null_values,
            encoding=cfg.encoding,
            skip_rows=cfg.skip_rows,
            schema_overrides=dtypes or None,
            glob=False,
        )
    elif isinstance(cfg, NdjsonSource):
        # The NDJSON reader fails on an override of an absent column with only its
        # name for a message, so check the declared names against the inferred schema first.
        if dtypes:
            _require_declared(schema_of(pl.scan_ndjson(paths)), dtypes, what)
        frame = pl.scan_ndjson(paths, schema_overrides=dtypes or None)
    else:
        frame = pl.scan_parquet(paths, glob=False)
    schema = schema_of(frame)
    _require_declared(schema, dtypes, what)
    if isinstance(cfg, ParquetSource) and dtypes:
        frame = frame.with_columns(
            cast_expr(name, schema[name], dtype).alias(name) for name, dtype in dtypes.items()
        )
    return frame


def _expand(pattern: str) -> list[str]:
    """The files a path or glob names, sorted; each one checked to be readable and non-empty."""
    path = os.path.expanduser(pattern)
    if os.path.isfile(path):
        paths = [path]
    else:
        paths = sorted(p for p in glob.glob(path, recursive=True) if os.path.isfile(p))
        if not paths:
            kind = "no file matches" if glob.has_magic(path) else "no such file:"
            raise DataSourceError(f"{kind} {pattern}")
    for p in paths:
        try:
            with open(p, "rb") as fh:
                first = fh.read(1)
        except OSError as exc:
            raise DataSourceError(f"cannot read {p}: {exc.strerror or exc}") from exc
        if not first:
            raise DataSourceError(f"{p} is empty (0 bytes); expected at least a header or a row")
    return paths


_TEXT_HEAD_BYTES = 64 * 1024
_TEXT_SAMPLE_BYTES = 4 * 1024


def _require_text(path: str, kind: str) -> None:
    """Refuse a text-format file with a NUL byte in its head, middle or tail.

    Three small reads, whatever the size: enough to catch binary files and sparse files
    (holes read as NULs), which no text format contains.
    """
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            offsets = [0]
            if size > _TEXT_HEAD_BYTES:
                offsets += [size // 2, max(size - _TEXT_SAMPLE_BYTES, 0)]
            for offset in offsets:
                chunk = os.pread(
                    fh.fileno(), _TEXT_HEAD_BYTES if offset == 0 else _TEXT_SAMPLE_BYTES, offset
                )
                nul = chunk.find(b"\0")
                if nul >= 0:
                    raise DataSourceError(
                        f"{path} is not {kind} text: NUL byte at offset {offset + nul} "
                        f"(a binary file, or a sparse file with holes)"
                    )
    except OSError as exc:
        raise DataSourceError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _which(paths: Sequence[str]) -> str:
    if len(paths) == 1:
        return paths[0]
    return f"{len(paths)} files ({paths[0]}, ...)"


def _require_declared(
    schema: Mapping[str, pl.DataType], dtypes: Mapping[str, pl.DataType], what: str
) -> None:
    missing = [name for name in dtypes if name not in schema]
    if missing:
        raise DataSourceError(
            f"{what}: dtypes declare {', '.join(map(repr, missing))} but the data has no such "
            f"column (columns: {list_names(schema)})"
        )


# ---------------------------------------------------------------- in-memory rows


def _from_records(
    records: Sequence[Mapping[str, Any]], dtypes: Mapping[str, pl.DataType], what: str
) -> pl.DataFrame:
    try:
        frame = pl.DataFrame([dict(r) for r in records], infer_schema_length=None)
    except POLARS_FAILURES as exc:  # a value polars cannot hold
        raise DataSourceError(f"{what}: {brief_error(exc)}") from exc
    for name, dtype in dtypes.items():
        if name not in frame.columns:
            frame = frame.with_columns(pl.Series(name, [None] * frame.height, dtype=dtype))
            continue
        try:
            frame = frame.with_columns(cast_expr(name, frame.schema[name], dtype).alias(name))
        except POLARS_FAILURES as exc:
            raise DataSourceError(
                f"{what}: column {name!r} as {dtype}: {brief_error(exc)}"
            ) from exc
    return frame
