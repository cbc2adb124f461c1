"""The entry layer between the packages and the scripts.

`build` (the network, AdamW groups, mixed precision), `setup` (resolving the configuration,
torchrun, logging, config.json), `training` (the train step and epoch, evaluation during
training, resuming), `inference` (loading a checkpoint with its saved configuration, the
inference loop, pred.json). train.py, test.py, demo.py, tools/ and benchmarks/ use these; they
do not import each other. This package and the scripts are the only importers of config.py.
"""
