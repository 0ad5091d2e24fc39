"""What a checkpoint checks: the ``validators:`` of a checkpoint.

One model per kind, discriminated on ``type`` (:data:`ValidatorConfig`). Each
shares ``name``, ``severity`` and ``mostly`` (the share of rows that must pass).
Checks that need no data run here, so a bad bound or regular expression is a
config error with its path rather than a failed run.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from checkpointd.config.base import Model
from checkpointd.config.durations import Duration


class _Validator(Model):
    name: str | None = None
    severity: Literal["error", "warning"] = "error"
    mostly: float | None = Field(default=None, ge=0.0, le=1.0)


class NotNullValidator(_Validator):
    type: Literal["not_null"]
    columns: list[str] = Field(min_length=1)


class NullRatioValidator(_Validator):
    type: Literal["null_ratio"]
    columns: list[str] = Field(min_length=1)
    max: float = Field(ge=0.0, le=1.0)


class UniqueValidator(_Validator):
    type: Literal["unique"]
    columns: list[str] = Field(min_length=1)


class RangeValidator(_Validator):
    type: Literal["range"]
    column: str
    min: float | None = None
    max: float | None = None
    min_inclusive: bool = True
    max_inclusive: bool = True

    @model_validator(mode="after")
    def _bounds(self) -> RangeValidator:
        if self.min is None and self.max is None:
            raise ValueError("range needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class InSetValidator(_Validator):
    type: Literal["in_set"]
    column: str
    values: list[Any] = Field(min_length=1)


class RegexValidator(_Validator):
    type: Literal["regex"]
    column: str
    pattern: str = Field(min_length=1)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        import re

        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
        return value


class RowCountValidator(_Validator):
    type: Literal["row_count"]
    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _bounds(self) -> RowCountValidator:
        if self.min is None and self.max is None:
            raise ValueError("row_count needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class SchemaValidator(_Validator):
    type: Literal["schema"]
    columns: dict[str, str | None] = Field(min_length=1)
    allow_extra: bool = True


class FreshnessValidator(_Validator):
    type: Literal["freshness"]
    column: str
    max_age: Duration


class _StatBetween(_Validator):
    column: str
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _bounds(self) -> Any:
        if self.min is None and self.max is None:
            raise ValueError(f"{getattr(self, 'type', 'validator')} needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class MeanBetweenValidator(_StatBetween):
    type: Literal["mean_between"]


class StddevBetweenValidator(_StatBetween):
    type: Literal["stddev_between"]


class ExpressionValidator(_Validator):
    type: Literal["expression"]
    expr: str = Field(min_length=1)


ValidatorConfig = Annotated[
    NotNullValidator
    | NullRatioValidator
    | UniqueValidator
    | RangeValidator
    | InSetValidator
    | RegexValidator
    | RowCountValidator
    | SchemaValidator
    | FreshnessValidator
    | MeanBetweenValidator
    | StddevBetweenValidator
    | ExpressionValidator,
    Field(discriminator="type"),
]


__all__ = [
    "ExpressionValidator",
    "FreshnessValidator",
    "InSetValidator",
    "MeanBetweenValidator",
    "NotNullValidator",
    "NullRatioValidator",
    "RangeValidator",
    "RegexValidator",
    "RowCountValidator",
    "SchemaValidator",
    "StddevBetweenValidator",
    "UniqueValidator",
    "ValidatorConfig",
]
