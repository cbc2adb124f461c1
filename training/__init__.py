"""Training SAR: what a run builds (optimizer groups, the DDP wrap), the data order, the train
step and epoch, evaluation during training, checkpoints and resuming, the monitor."""
