"""The reliability suite: faults, attacks and load (docs/reliability.md)."""
