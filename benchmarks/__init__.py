"""Benchmarks: each module has `run(argv) -> dict`, prints a table and writes JSON (default
benchmarks/results/NAME.json). `python -m benchmarks [name ...]` runs them (all by default);
`benchmarks/gpu/check.sh` is the one-command device check. Imports inside the package are
relative, so it also works installed under another name (`progan_dsl.benchmarks`)."""

import os as _os

from progan_dsl.devices import PASSIVE_WAIT as _PASSIVE_WAIT

for _key, _value in _PASSIVE_WAIT.items():  # before any benchmark loads torch; the user's wins
    _os.environ.setdefault(_key, _value)
