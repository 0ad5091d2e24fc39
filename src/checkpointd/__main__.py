"""``python -m checkpointd`` is the ``checkpointd`` command."""

from __future__ import annotations

from checkpointd.cli import main

raise SystemExit(main())
