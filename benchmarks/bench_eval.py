"""Time the local FreiHAND evaluation at the real evaluation-set size.

    python -m benchmarks.bench_eval [--num-samples 3960]

What is measured: benchmarks/evaluation.py.
"""
import argparse

from benchmarks.evaluation import run

if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--num-samples', type=int, default=3960)
    run(parser.parse_args().num_samples)
