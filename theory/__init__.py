"""theory package (see docs/architecture.md)."""
