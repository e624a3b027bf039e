"""torchport package (see docs/architecture.md)."""
