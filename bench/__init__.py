"""checkpointd benchmarks: ``python -m bench`` (or ``scripts/bench``); see docs/benchmarks.md."""
