"""Benchmarks: each module has `run(argv) -> dict`, prints a table and writes JSON (default
benchmarks/results/NAME.json). `progan-bench [name ...]` runs them (all by default);
`benchmarks/gpu/check.sh` is the one-command device check. Imports inside the package are
relative, so it also works installed under another name (`progan_dsl.benchmarks`)."""
