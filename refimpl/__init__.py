"""refimpl package (see docs/architecture.md)."""
