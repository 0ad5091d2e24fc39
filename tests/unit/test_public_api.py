"""The public Python API: what ``from checkpointd import ...`` promises.

Every name in every ``__all__`` resolves and is documented; ``import
checkpointd`` stays cheap; and every code block of docs/python-api.md runs, so
the guide cannot drift from the library.
"""

from __future__ import annotations

import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import checkpointd

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "python-api.md"

PACKAGES = [
    "checkpointd",
    "checkpointd.actions",
    "checkpointd.checkpoints",
    "checkpointd.daemon",
    "checkpointd.triggers",
]

# DESIGN.md "Python API", plus the result, config and error types a caller needs.
PROMISED = {
    "AsyncCheckpointRunner", "AsyncRunnerConfig", "CheckpointPool", "run_checkpoint_async",
    "run_checkpoints_parallel", "AsyncBaseAction", "AsyncBaseTrigger", "SequentialStrategy",
    "ConcurrentStrategy", "PipelineStrategy", "AsyncExecutionContext", "SyncActionAdapter",
    "adapt_to_async", "with_retry", "with_timeout", "with_semaphore", "run_async_in_sync",
    "Checkpoint", "CheckpointResult", "Status", "ValidatorResult", "TriggerEvent", "Config",
    "load_config", "ActionResult", "ActionStatus", "CheckpointdError", "ConfigError",
    "DataSourceError", "ValidatorError", "StoreError", "StateDirInUseError", "RunnerError",
    "DeliveryError",
}  # fmt: skip

# Modules whose import is the cost `import checkpointd` must not pay.
HEAVY = ["polars", "pydantic", "aiohttp", "aiosqlite", "aiokafka", "structlog", "yaml"]


def public(package: str) -> list[tuple[str, Any]]:
    module = importlib.import_module(package)
    return [(name, getattr(module, name)) for name in module.__all__]


# ---------------------------------------------------------------- names


def test_the_top_level_package_offers_everything_the_design_promises():
    assert set(checkpointd.__all__) >= PROMISED


@pytest.mark.parametrize("package", PACKAGES)
def test_every_name_in_all_resolves(package):
    module = importlib.import_module(package)

    missing = [name for name in module.__all__ if not hasattr(module, name)]

    assert missing == []
    assert len(module.__all__) == len(set(module.__all__))


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_is_the_object_from_its_defining_module(package):
    # A lazy re-export must hand out the very object, not a copy or a stand-in.
    for name, value in public(package):
        if name == "__version__":
            continue
        defined_in = importlib.import_module(value.__module__)
        assert getattr(defined_in, name) is value, f"{package}.{name}"


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_has_a_docstring(package):
    undocumented = [
        name
        for name, value in public(package)
        if name != "__version__" and not (inspect.getdoc(value) or "").strip()
    ]

    assert undocumented == []


@pytest.mark.parametrize("package", PACKAGES)
def test_the_package_itself_is_documented_and_lists_its_names(package):
    module = importlib.import_module(package)

    assert (module.__doc__ or "").strip()
    assert set(module.__all__) <= set(dir(module))


def test_star_import_gives_exactly_all():
    namespace: dict[str, Any] = {}
    exec("from checkpointd import *", namespace)

    assert set(namespace) - {"__builtins__"} == set(checkpointd.__all__)


def test_an_unknown_name_is_an_attribute_error_naming_it():
    with pytest.raises(AttributeError, match="module 'checkpointd' has no attribute 'Chekpoint'"):
        _ = checkpointd.Chekpoint  # type: ignore[attr-defined]

    with pytest.raises(ImportError):
        exec("from checkpointd.daemon import NoSuchThing", {})


def test_submodules_stay_importable_through_lazy_packages():
    from checkpointd.runtime import pool as workerpool

    assert isinstance(workerpool, ModuleType)
    assert workerpool.CheckpointPool is checkpointd.CheckpointPool


def test_the_version_is_the_installed_distributions():
    from importlib.metadata import version

    assert checkpointd.__version__ == version("checkpointd")


# ---------------------------------------------------------------- import cost


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return {line.split(".")[0] for line in out.splitlines()}


def test_importing_checkpointd_loads_no_heavy_dependency():
    loaded = _modules_after("import checkpointd")

    assert [name for name in HEAVY if name in loaded] == []


def test_importing_a_result_type_does_not_load_polars():
    # A webhook receiver that parses results needs no dataframe library.
    loaded = _modules_after("from checkpointd import CheckpointResult, Status, TriggerEvent")

    assert "polars" not in loaded


def test_importing_checkpoint_still_leaves_polars_for_the_first_run():
    # A daemon that has not run anything yet stays small (idle RSS): polars comes with the
    # first run, in its worker thread (tests/unit/test_lazy_imports.py runs one).
    loaded = _modules_after("from checkpointd import Checkpoint; Checkpoint.__init__")

    assert "pydantic" in loaded  # the import really happened (top-level names only here)
    assert "polars" not in loaded


# ---------------------------------------------------------------- the guide runs


def guide_blocks() -> list[tuple[int, str]]:
    """Every ```python block of the guide with the line its code starts on."""
    text = GUIDE.read_text()
    blocks = []
    for match in re.finditer(r"^```python\n(.*?)^```$", text, flags=re.S | re.M):
        line = text.count("\n", 0, match.start(1)) + 1
        blocks.append((line, match.group(1)))
    return blocks


def test_the_guide_has_a_quickstart_and_an_example_for_every_public_name():
    code = "\n".join(block for _line, block in guide_blocks())

    assert "## Quickstart" in GUIDE.read_text()
    unused = [name for name in checkpointd.__all__ if name != "__version__" and name not in code]
    assert unused == []


def test_every_code_block_of_the_guide_runs_top_to_bottom():
    namespace: dict[str, Any] = {"__name__": "python_api_guide"}
    blocks = guide_blocks()
    assert len(blocks) > 10

    for line, block in blocks:
        # Padding with blank lines makes a traceback point at the guide's own line numbers.
        code = compile("\n" * (line - 1) + block, str(GUIDE), "exec")
        exec(code, namespace)

    # The quickstart's promises, checked from outside the guide as well.
    assert namespace["orders"].run().status is checkpointd.Status.FAILURE
    assert namespace["customers"].run().status is checkpointd.Status.SUCCESS
