"""Tests of checkpointd.actions."""
