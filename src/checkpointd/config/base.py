"""The base every config model derives from: frozen, and strict about unknown keys.

Forbidding extra keys is what turns a typo in the file (``timout: 5s``) into an
error naming its path instead of a setting silently ignored; frozen models let
a loaded config be shared by every component without anyone changing it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    """A config section: unknown keys are errors, and values cannot be reassigned."""

    model_config = ConfigDict(extra="forbid", frozen=True)


__all__ = ["Model"]
