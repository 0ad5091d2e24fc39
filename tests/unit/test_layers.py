"""The layers of DESIGN.md hold: the import-linter contracts in pyproject.toml pass on the
tree, and fail on a copy of it with an upward import or a circle planted in it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(
    not LINT_IMPORTS.exists(), reason="import-linter is a dev dependency (pip install -e .[dev])"
)


def lint(tree: Path) -> subprocess.CompletedProcess[str]:
    """Run the project's contracts (pyproject.toml) on the package under ``tree/src``."""
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the package, to plant imports in."""
    shutil.copytree(
        ROOT / "src" / "checkpointd",
        tmp_path / "src" / "checkpointd",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return tmp_path


def plant(tree: Path, module: str, line: str) -> None:
    path = tree / "src" / (module.replace(".", "/") + ".py")
    path.write_text(path.read_text() + f"\n{line}\n")


def test_the_tree_keeps_every_contract(tree):
    answer = lint(tree)
    assert answer.returncode == 0, answer.stdout + answer.stderr
    assert "0 broken" in answer.stdout


def test_an_import_from_a_lower_layer_to_a_higher_one_breaks_the_layers(tree):
    plant(tree, "checkpointd.store.model", "from checkpointd.daemon import app  # noqa")
    answer = lint(tree)
    assert answer.returncode != 0
    assert "checkpointd.store is not allowed to import checkpointd.daemon" in answer.stdout


def test_a_foundation_importing_config_breaks_the_layers(tree):
    plant(tree, "checkpointd.events", "import checkpointd.config.models  # noqa")
    answer = lint(tree)
    assert answer.returncode != 0
    assert "checkpointd.events is not allowed to import checkpointd.config" in answer.stdout


def test_a_circle_between_two_modules_of_one_package_breaks_the_acyclic_contract(tree):
    # kafka_batch is imported by kafka_dispatch; importing back closes a circle in triggers/.
    plant(tree, "checkpointd.triggers.kafka_batch", "import checkpointd.triggers.kafka_dispatch")
    answer = lint(tree)
    assert answer.returncode != 0
    assert "no circular imports" in answer.stdout
    assert "BROKEN" in answer.stdout
