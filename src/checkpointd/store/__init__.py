"""The state store: journal, runs, outbox, trigger state, behind one Protocol.

``checkpointd.protocols.Store`` is the interface every other layer uses (``SqliteStore``
is the embedded backend);
``model`` holds the backend-neutral rows it returns; ``statelock`` the lock on
a state directory; one folder per backend (``sqlite/``). Names are imported on
first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from checkpointd._lazy import lazy_exports

if TYPE_CHECKING:
    from checkpointd.store.sqlite.store import SqliteStore

__all__ = ["SqliteStore"]

_LAZY: dict[str, str] = {"SqliteStore": "checkpointd.store.sqlite.store"}


# Hidden from type checkers, which see the imports above instead.
if not TYPE_CHECKING:
    __getattr__, __dir__ = lazy_exports(__name__, globals(), _LAZY)
