"""Training: `progan-train` grows and trains the networks of a compiled spec.

Modules: `schedule` (images shown -> phase, alpha, minibatch, learning rate; torch-free),
`losses` (WGAN-GP + drift, LSGAN, logistic + R1), `trainer` (G, D, G EMA, optimizers and one
iteration), `loop` (a run's life: start, resume, ticks, checkpoints, rollback), `rundir` (run
folders and crash-safe files), `feedback` (progress, grids, plots, TensorBoard), `distributed`
(torchrun process groups), `checkpoint` (the checkpoint format), `cli`.
"""
