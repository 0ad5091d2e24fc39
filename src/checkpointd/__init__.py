"""checkpointd: a daemon that keeps data honest."""
