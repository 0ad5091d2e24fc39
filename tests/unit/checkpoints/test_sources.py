"""Data sources: placeholders, file formats and their options, in-memory rows, and errors."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from pydantic import TypeAdapter

from checkpointd.checkpoints.sources import describe_source, fill_placeholders, load_frame
from checkpointd.config.models import CsvSource, DataSourceConfig, ParquetSource
from checkpointd.errors import DataSourceError
from checkpointd.events import TriggerEvent

from .conftest import orders_frame

_SOURCE = TypeAdapter(DataSourceConfig)


def source(**spec: Any) -> DataSourceConfig:
    """A data source config from the mapping a config file would hold."""
    return _SOURCE.validate_python(spec)


def event(type_: str = "file", **params: str) -> TriggerEvent:
    return TriggerEvent(
        type=type_, key="k1", fired_at=datetime(2026, 3, 2, tzinfo=UTC), params=params
    )


def load(spec: dict[str, Any], trigger: TriggerEvent | None = None) -> pl.DataFrame:
    return load_frame(source(**spec), trigger).collect()


# ---------------------------------------------------------------- placeholders


def test_placeholders_are_filled_from_the_trigger_params():
    cfg = source(type="csv", path="in/{trigger.dataset}/{trigger.day}.csv")

    filled = fill_placeholders(cfg, event(dataset="orders", day="2026-03-02"))

    assert isinstance(filled, CsvSource)
    assert isinstance(cfg, CsvSource)
    assert filled.path == "in/orders/2026-03-02.csv"
    assert cfg.path == "in/{trigger.dataset}/{trigger.day}.csv"  # the config is untouched


def test_a_path_without_placeholders_is_returned_as_is():
    cfg = source(type="parquet", path="data/*.parquet")

    assert fill_placeholders(cfg, None) is cfg


def test_sources_without_a_path_are_returned_as_is():
    cfg = source(type="inline", rows=[{"a": 1}])

    assert fill_placeholders(cfg, event()) is cfg


def test_a_param_the_trigger_lacks_names_the_placeholder_and_the_trigger_type():
    cfg = source(type="csv", path="{trigger.path}")

    with pytest.raises(DataSourceError) as caught:
        fill_placeholders(cfg, event("schedule", name="nightly"))

    assert str(caught.value) == (
        "data source path '{trigger.path}' needs {trigger.path}, but the 'schedule' trigger "
        "provides no 'path' (it provides: name)"
    )


def test_a_placeholder_without_any_event_is_an_error():
    with pytest.raises(DataSourceError, match=r"needs \{trigger\.path\}, but this run has no"):
        fill_placeholders(source(type="csv", path="{trigger.path}"), None)


def test_a_file_handed_over_by_a_trigger_is_loaded_even_with_glob_characters(tmp_path):
    path = tmp_path / "report[1].csv"
    path.write_text("id\n1\n2\n")

    frame = load({"type": "csv", "path": "{trigger.path}"}, event(path=str(path)))

    assert frame["id"].to_list() == [1, 2]


# ---------------------------------------------------------------- csv


def test_csv_options_are_passed_to_the_reader(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("# exported 2026-03-02\nid;name;note\n1;'a;b';NA\n2;c;ok\n")

    frame = load(
        {
            "type": "csv",
            "path": str(path),
            "separator": ";",
            "quote_char": "'",
            "null_values": ["NA"],
            "skip_rows": 1,
        }
    )

    assert frame.to_dicts() == [
        {"id": 1, "name": "a;b", "note": None},
        {"id": 2, "name": "c", "note": "ok"},
    ]


def test_csv_without_a_header_gets_numbered_columns(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("1,a\n2,b\n")

    frame = load({"type": "csv", "path": str(path), "has_header": False})

    assert frame.columns == ["column_0", "column_1"]
    assert frame.height == 2


def test_csv_lossy_encoding_replaces_invalid_bytes(tmp_path):
    path = tmp_path / "x.csv"
    path.write_bytes(b"name\nok\nbad\xff\n")

    frame = load({"type": "csv", "path": str(path), "encoding": "utf8-lossy"})

    assert frame["name"].to_list() == ["ok", "bad\ufffd"]


def test_csv_dtypes_override_what_the_reader_would_infer(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("id,amount,day,flag\n1,2,2026-03-01,true\n2,3.5,2026-03-02,false\n")

    frame = load(
        {
            "type": "csv",
            "path": str(path),
            "dtypes": {"id": "Utf8", "amount": "Float64", "day": "Date", "flag": "Boolean"},
        }
    )

    assert frame.schema == pl.Schema(
        {"id": pl.String, "amount": pl.Float64, "day": pl.Date, "flag": pl.Boolean}
    )
    assert frame["day"].to_list() == [date(2026, 3, 1), date(2026, 3, 2)]


def test_an_empty_csv_file_is_an_error_saying_so(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")

    with pytest.raises(DataSourceError, match=r"empty\.csv is empty \(0 bytes\)"):
        load_frame(source(type="csv", path=str(path)), None)


def test_a_header_only_csv_is_a_frame_of_no_rows(tmp_path):
    path = tmp_path / "header.csv"
    path.write_text("id,amount\n")

    frame = load({"type": "csv", "path": str(path), "dtypes": {"amount": "Float64"}})

    assert frame.height == 0
    assert frame.schema == pl.Schema({"id": pl.String, "amount": pl.Float64})


# ---------------------------------------------------------------- files and globs


def test_a_glob_reads_every_matching_file_in_name_order(tmp_path):
    for day, ids in (("02", [3]), ("01", [1, 2]), ("03", [4, 5])):
        (tmp_path / f"orders-{day}.csv").write_text("id\n" + "".join(f"{i}\n" for i in ids))
    (tmp_path / "notes.txt").write_text("not part of it")

    frame = load({"type": "csv", "path": str(tmp_path / "orders-*.csv")})

    assert frame["id"].to_list() == [1, 2, 3, 4, 5]


def test_a_recursive_glob_reaches_subdirectories(tmp_path):
    (tmp_path / "2026" / "03").mkdir(parents=True)
    orders_frame().head(3).write_parquet(tmp_path / "top.parquet")
    orders_frame().tail(2).write_parquet(tmp_path / "2026" / "03" / "deep.parquet")

    frame = load({"type": "parquet", "path": str(tmp_path / "**" / "*.parquet")})

    assert frame.height == 5


def test_a_glob_that_matches_nothing_is_an_error(tmp_path):
    pattern = str(tmp_path / "*.parquet")

    with pytest.raises(DataSourceError, match=r"^no file matches .*\*\.parquet$"):
        load_frame(source(type="parquet", path=pattern), None)


def test_a_missing_file_is_an_error(tmp_path):
    path = str(tmp_path / "gone.csv")

    with pytest.raises(DataSourceError, match=r"^no such file: .*gone\.csv$"):
        load_frame(source(type="csv", path=path), None)


def test_a_directory_is_not_a_file(tmp_path):
    (tmp_path / "x.csv").mkdir()

    with pytest.raises(DataSourceError, match="no such file"):
        load_frame(source(type="csv", path=str(tmp_path / "x.csv")), None)


# ---------------------------------------------------------------- parquet


def test_parquet_is_scanned_lazily(tmp_path):
    path = tmp_path / "orders.parquet"
    orders_frame().write_parquet(path)

    frame = load_frame(source(type="parquet", path=str(path)), None)

    assert isinstance(frame, pl.LazyFrame)
    assert "Parquet SCAN" in frame.explain()
    assert frame.select(pl.len()).collect().item() == 1000


def test_parquet_dtypes_are_strict_casts(tmp_path):
    path = tmp_path / "x.parquet"
    pl.DataFrame({"id": [1, 2], "day": ["2026-03-01", "2026-03-02"]}).write_parquet(path)

    frame = load({"type": "parquet", "path": str(path), "dtypes": {"id": "Float64", "day": "Date"}})

    assert frame.schema == pl.Schema({"id": pl.Float64, "day": pl.Date})
    assert frame["day"].to_list() == [date(2026, 3, 1), date(2026, 3, 2)]


def test_a_parquet_dtype_for_a_column_the_file_lacks_is_an_error(tmp_path):
    path = tmp_path / "x.parquet"
    pl.DataFrame({"id": [1]}).write_parquet(path)

    with pytest.raises(DataSourceError, match=r"dtypes declare 'day' but .* \(columns: id\)$"):
        load_frame(source(type="parquet", path=str(path), dtypes={"day": "Date"}), None)


def test_a_file_that_is_not_parquet_is_an_error_naming_it(tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"id,amount\n1,2\n")

    with pytest.raises(DataSourceError) as caught:
        load_frame(source(type="parquet", path=str(path)), None)

    assert str(caught.value).startswith(f"parquet {path}: cannot read {path}: parquet: ")


def test_an_empty_parquet_file_is_an_error_saying_so(tmp_path):
    path = tmp_path / "zero.parquet"
    path.touch()

    with pytest.raises(DataSourceError, match=r"zero\.parquet is empty"):
        load_frame(source(type="parquet", path=str(path)), None)


# ---------------------------------------------------------------- ndjson


def test_ndjson_with_dtypes_parses_into_them(tmp_path):
    path = tmp_path / "x.ndjson"
    path.write_text(
        '{"id": 1, "at": "2026-03-01T10:00:00", "v": 1}\n{"id": 2, "at": null, "v": 2.5}\n'
    )

    frame = load({"type": "ndjson", "path": str(path), "dtypes": {"at": "Datetime", "id": "Int32"}})

    expected: dict[str, pl.DataType] = {
        "id": pl.Int32(),
        "at": pl.Datetime("us"),
        "v": pl.Float64(),
    }
    assert frame.schema == pl.Schema(expected)
    assert frame["at"].to_list() == [datetime(2026, 3, 1, 10, 0), None]


def test_an_ndjson_dtype_for_a_column_the_file_lacks_is_an_error_naming_it(tmp_path):
    path = tmp_path / "x.ndjson"
    path.write_text('{"id": 1}\n')

    with pytest.raises(DataSourceError) as caught:
        load_frame(source(type="ndjson", path=str(path), dtypes={"at": "Datetime"}), None)

    assert str(caught.value) == (
        f"ndjson {path}: dtypes declare 'at' but the data has no such column (columns: id)"
    )


# ---------------------------------------------------------------- dtypes


def test_an_unknown_dtype_name_lists_the_valid_names(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("id\n1\n")

    with pytest.raises(DataSourceError) as caught:
        load_frame(source(type="csv", path=str(path), dtypes={"id": "integer"}), None)

    message = str(caught.value)
    assert message.startswith(f"csv {path}: dtypes: column 'id': unknown dtype 'integer'; valid ")
    assert "Int64, UInt8" in message
    assert message.endswith("Categorical, Utf8")


def test_a_dtype_for_a_column_the_file_lacks_is_an_error(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("id,amount\n1,2\n")

    with pytest.raises(DataSourceError, match=r"dtypes declare 'price' but the data has no such"):
        load_frame(source(type="csv", path=str(path), dtypes={"price": "Float64"}), None)


def test_dtype_names_are_case_insensitive_with_common_aliases():
    frame = load(
        {
            "type": "inline",
            "rows": [{"a": 1, "b": 1, "c": "x", "d": 0}],
            "dtypes": {"a": "float64", "b": "INT8", "c": "str", "d": "bool"},
        }
    )

    assert frame.schema == pl.Schema(
        {"a": pl.Float64, "b": pl.Int8, "c": pl.String, "d": pl.Boolean}
    )


# ---------------------------------------------------------------- in-memory rows


def test_inline_rows_become_a_frame_with_inferred_types():
    frame = load({"type": "inline", "rows": [{"id": 1, "name": "a"}, {"id": 2, "extra": True}]})

    assert frame.to_dicts() == [
        {"id": 1, "name": "a", "extra": None},
        {"id": 2, "name": None, "extra": True},
    ]


def test_inline_dtypes_convert_and_absent_columns_become_null():
    frame = load(
        {
            "type": "inline",
            "rows": [{"day": "2026-03-01"}],
            "dtypes": {"day": "Date", "amount": "Float64"},
        }
    )

    assert frame.to_dicts() == [{"day": date(2026, 3, 1), "amount": None}]
    assert frame.schema["amount"] == pl.Float64


def test_an_inline_value_that_does_not_convert_is_an_error():
    with pytest.raises(DataSourceError, match=r"^inline rows: column 'day' as Date: "):
        load_frame(source(type="inline", rows=[{"day": "soon"}], dtypes={"day": "Date"}), None)


def test_kafka_batch_reads_the_records_of_the_event():
    batch = TriggerEvent(
        type="kafka",
        key="orders/0/41",
        fired_at=datetime(2026, 3, 2, tzinfo=UTC),
        records=[{"id": 1, "amount": 2}, {"id": 2, "amount": 2.5}],
    )

    frame = load({"type": "kafka_batch", "dtypes": {"id": "UInt32"}}, batch)

    assert frame.schema == pl.Schema({"id": pl.UInt32, "amount": pl.Float64})
    assert frame["amount"].to_list() == [2.0, 2.5]


def test_an_empty_kafka_batch_is_a_frame_of_no_rows_with_the_declared_columns():
    batch = TriggerEvent(
        type="kafka", key="k", fired_at=datetime(2026, 3, 2, tzinfo=UTC), records=[]
    )

    frame = load({"type": "kafka_batch", "dtypes": {"id": "Int64"}}, batch)

    assert (frame.height, frame.schema) == (0, pl.Schema({"id": pl.Int64}))


@pytest.mark.parametrize(
    ("trigger", "reason"),
    [
        (None, "this run has no trigger event"),
        (event("schedule"), "the 'schedule' trigger supplied none"),
    ],
)
def test_kafka_batch_without_records_is_an_error(trigger, reason):
    with pytest.raises(DataSourceError) as caught:
        load_frame(source(type="kafka_batch"), trigger)

    assert str(caught.value) == (
        f"kafka_batch data source needs the records of a Kafka batch, but {reason}"
    )


# ---------------------------------------------------------------- naming


@pytest.mark.parametrize(
    ("spec", "name"),
    [
        ({"type": "parquet", "path": "data/*.parquet"}, "parquet data/*.parquet"),
        ({"type": "inline", "rows": [{"a": 1}, {"a": 2}]}, "inline rows (2)"),
        ({"type": "kafka_batch"}, "kafka_batch records"),
    ],
)
def test_describe_source_names_a_source_for_messages(spec, name):
    assert describe_source(source(**spec)) == name


def test_relative_paths_are_relative_to_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    orders_frame().head(4).write_parquet(tmp_path / "data" / "o.parquet")
    monkeypatch.chdir(tmp_path)

    frame = load_frame(ParquetSource(type="parquet", path="data/*.parquet"), None)

    assert frame.collect().height == 4
    assert Path("data/o.parquet").exists()
