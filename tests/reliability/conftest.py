"""The reliability suite: the daemon under crashes, signals, a full disk, bad input and load.

Every test here is marked ``reliability``. By default each runs scaled down, so the suite
fits in CI; ``pytest tests/reliability --reliability-full`` (or ``scripts/reliability``)
runs the full version: more crash cycles, more fuzz examples, a 30-minute soak. Each test
writes the figures it measured to ``.cache/reliability/<test>.json``; ``scripts/reliability``
prints them as the table that goes into ``docs/reliability.md``.

(The option lives in this folder's conftest, so pass the folder on the command line:
``pytest --reliability-full`` alone, from the repository root, does not load it.)
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.support import FIGURES_DIR, Figures, Scale

FULL_TIMEOUT = 3 * 3600
"""pytest-timeout for one test in the full run (the soak alone takes 30 minutes)."""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--reliability-full",
        action="store_true",
        default=False,
        help="run the reliability suite at full scale (20 crash cycles, 30-minute soak, ...)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    full = bool(config.getoption("--reliability-full"))
    for item in items:
        if "tests/reliability/" in str(item.fspath):
            item.add_marker(pytest.mark.reliability)
            if full:
                item.add_marker(pytest.mark.timeout(FULL_TIMEOUT))


@pytest.fixture(scope="session")
def scale(pytestconfig: pytest.Config) -> Scale:
    """How hard to push: the CI scale unless ``--reliability-full`` was given."""
    return Scale.full_scale() if pytestconfig.getoption("--reliability-full") else Scale.ci()


@pytest.fixture
def figures(request: pytest.FixtureRequest, scale: Scale) -> Iterator[Figures]:
    """What the test measured; saved as JSON (even when the test fails) for the report."""
    recorded = Figures(test=request.node.nodeid, mode="full" if scale.full else "ci")
    try:
        yield recorded
    finally:
        if recorded.values:
            FIGURES_DIR.mkdir(parents=True, exist_ok=True)
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid.split("::", 1)[-1])
            path: Path = FIGURES_DIR / f"{name}.json"
            path.write_text(json.dumps(recorded.as_dict(), indent=2, default=str) + "\n")
