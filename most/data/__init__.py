"""Data: sources (hub, local, pair sets), synthesis, audio I/O, quality checks, manifests, the leakage check."""
