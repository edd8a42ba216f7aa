"""Data stages: `download` (sources, embedded synthesis) and `prepare` (manifests, quality report)."""
