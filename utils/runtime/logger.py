"""Logging set-up for the entry scripts: one file log and the console, on rank 0 only."""
import logging
import os
import sys


def setup_logger(log_file=None, rank=0, name='sar'):
    """Configure the root logger: INFO to the console and to `log_file` on rank 0; warnings
    only on other ranks (so a multi-GPU run prints one log). Returns the named logger."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    fmt = logging.Formatter('%(asctime)s %(levelname)s %(message)s', datefmt='%m-%d %H:%M:%S')
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(fmt)
    root.addHandler(console)
    if log_file and rank == 0:
        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        file_handler = logging.FileHandler(log_file)
        file_handler.setFormatter(fmt)
        root.addHandler(file_handler)
    return logging.getLogger(name)


def log_environment(logger):
    """Log the versions and devices a run used (for comparing runs)."""
    import numpy
    import torch
    logger.info('python %s | torch %s | numpy %s | cuda available %s (%s) | threads %d',
                sys.version.split()[0], torch.__version__, numpy.__version__,
                torch.cuda.is_available(),
                torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU',
                torch.get_num_threads())
