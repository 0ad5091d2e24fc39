"""Where a checkpoint's rows come from: the ``data_source:`` of a checkpoint.

One model per kind, discriminated on ``type`` (:data:`DataSourceConfig`). File
kinds share ``path`` and ``dtypes``; the loader makes a relative ``path``
relative to the config file's folder before these models see it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import Field

from checkpointd.config.base import Model
from checkpointd.config.durations import Duration


class _FileSource(Model):
    path: str = Field(min_length=1)
    dtypes: dict[str, str] | None = None


class CsvSource(_FileSource):
    type: Literal["csv"]
    separator: str = Field(default=",", min_length=1, max_length=1)
    has_header: bool = True
    quote_char: str | None = '"'
    null_values: list[str] | None = None
    encoding: Literal["utf8", "utf8-lossy"] = "utf8"
    skip_rows: int = Field(default=0, ge=0)


class ParquetSource(_FileSource):
    type: Literal["parquet"]


class NdjsonSource(_FileSource):
    type: Literal["ndjson"]


class InlineSource(Model):
    type: Literal["inline"]
    rows: list[dict[str, Any]]
    dtypes: dict[str, str] | None = None


class KafkaBatchSource(Model):
    type: Literal["kafka_batch"]
    max_messages: int = Field(default=1000, ge=1)
    max_wait: Duration = timedelta(seconds=5)
    dtypes: dict[str, str] | None = None


DataSourceConfig = Annotated[
    CsvSource | ParquetSource | NdjsonSource | InlineSource | KafkaBatchSource,
    Field(discriminator="type"),
]


__all__ = [
    "CsvSource",
    "DataSourceConfig",
    "InlineSource",
    "KafkaBatchSource",
    "NdjsonSource",
    "ParquetSource",
]
