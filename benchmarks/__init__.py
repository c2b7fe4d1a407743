"""Benchmarks for Stevedore: run them as modules, e.g. `python -m benchmarks.throughput` (see README.md)."""
