"""The one-command GPU check (`bash benchmarks/gpu/check.sh [--quick]`):
`check` runs the steps (environment, CUDA tests, training smoke, training and inference
benchmarks), each in its own process with its own time budget; `smoke` is the training smoke.
docs/gpu-check.md says how a GPU session runs it and what to read in its output."""
