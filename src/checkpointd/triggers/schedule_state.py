"""A schedule's durable state, as JSON: decoded once at start, encoded at every fire.

In namespace ``schedule`` under the source name::

    {"version": 1, "spec": "<fingerprint>", "armed_at": "<UTC>", "last_fire": "<UTC>|null"}

Between two restarts only ``last_fire`` changes, and it changes at every fire: with a
thousand schedules due together that is a thousand encodings in one burst of loop work.
:class:`StateEncoder` writes the constant part once and then only splices the fire time
in; its output is the very text ``json.dumps`` gives for the same dict.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from checkpointd.triggers.catchup import format_fire_time, parse_fire_time

__all__ = ["STATE_VERSION", "SavedState", "StateEncoder", "decode_state"]

STATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class SavedState:
    """What a schedule persisted: its fingerprint, when it was armed, its last fire."""

    spec: str
    armed_at: datetime
    last_fire: datetime | None


def decode_state(raw: str) -> SavedState:
    """The state ``raw`` holds (UTC datetimes).

    Raises ValueError, KeyError or TypeError when ``raw`` is not a schedule state.
    """
    saved = json.loads(raw)
    last_fire = saved["last_fire"]
    return SavedState(
        spec=str(saved["spec"]),
        armed_at=parse_fire_time(saved["armed_at"]),
        last_fire=None if last_fire is None else parse_fire_time(last_fire),
    )


class StateEncoder:
    """Encodes the state of one armed schedule, for any ``last_fire``."""

    def __init__(self, spec: str, armed_at: datetime) -> None:
        head = json.dumps(
            {"version": STATE_VERSION, "spec": spec, "armed_at": format_fire_time(armed_at)}
        )
        self._head = head[:-1] + ', "last_fire": '

    def encode(self, last_fire: str | None) -> str:
        """The state with ``last_fire``, a fire time as ``format_fire_time`` writes it.

        Such a text is digits, ``-``, ``:``, ``T``, ``.`` and ``Z``: nothing JSON escapes,
        so it is quoted as is.
        """
        if last_fire is None:
            return self._head + "null}"
        return f'{self._head}"{last_fire}"}}'
