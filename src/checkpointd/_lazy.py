"""Lazy re-exports for package ``__init__`` modules (PEP 562).

``import checkpointd`` must stay cheap (no polars, pydantic or aiohttp until a
name is used), so packages re-export their public names through
:func:`lazy_exports` instead of importing them eagerly.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, namespace: dict[str, Any], names: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for a package whose ``names`` map to defining modules.

    A resolved name is cached in the package's ``namespace`` (its ``globals()``).
    """

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(names))

    return __getattr__, __dir__
