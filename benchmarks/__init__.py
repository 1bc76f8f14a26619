"""Benchmarks: each module has `run(argv) -> dict`, prints a table and writes JSON under
benchmarks/results/. `python -m benchmarks [name ...]` runs them (all by default)."""
