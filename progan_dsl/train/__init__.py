"""Training: `progan-train` grows and trains the networks of a compiled spec.

Modules, in the order data flows: `schedule` (images shown -> phase, alpha, minibatch, learning
rate; torch-free), `losses` (the loss registry: WGAN-GP + drift, LSGAN, logistic + R1),
`trainer` (G, D, G EMA, optimizers and one iteration), `start` (where a run starts, preflight
checks), `monitor` (host syncs, statistics windows, throughput, intervals), `rundir` (run
folders, their log and lock), `recorder` (a run's events and checkpoints on disk), `feedback`
(lines, progress, grids, plots, TensorBoard), `evaluator` (metrics during training), `loop`
(`train`: the owners wired together), `distributed` (torchrun process groups), `cli`.
Checkpoints are `progan_dsl.checkpoint`.
"""
