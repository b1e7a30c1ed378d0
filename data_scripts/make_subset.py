#!/usr/bin/env python
"""Write a class-balanced, seeded subset of a dataset in the official CIFAR python format.

    python data_scripts/make_subset.py --dataset cifar10 --data-dir data --train 5000 --test 1000 --seed 0 --out data/c10-5k

The subset takes N // K images of each of the K classes (the first N % K
classes get one more), chosen with the given seed, in their original order,
and lands in OUT/cifar-10-batches-py/ (or OUT/cifar-100-python/), loadable
with ``--data-dir OUT``. ``--dataset synthetic`` writes the embedded synthetic
dataset in CIFAR-10 format.
"""
import sys
from pathlib import Path

try:
    from minicnn.data.prepare import OneLineParser, make_subset, run_cli
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from minicnn.data.prepare import OneLineParser, make_subset, run_cli


def main(argv=None):
    p = OneLineParser(prog='make_subset.py', description=__doc__.split('\n\n')[0])
    p.add_argument('--dataset', required=True, choices=['cifar10', 'cifar100', 'synthetic'])
    p.add_argument('--data-dir', default=None, help='directory holding the full dataset (not for synthetic)')
    p.add_argument('--train', type=int, required=True, help='number of training images')
    p.add_argument('--test', type=int, required=True, help='number of test images')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--format', default='python', choices=['python', 'binary'])
    p.add_argument('--out', required=True, help='output data root')
    p.add_argument('--overwrite', action='store_true', help='replace an existing subset at --out')
    a = p.parse_args(argv)
    folder = make_subset(a.dataset, a.data_dir, a.train, a.test, a.seed, a.out, format=a.format,
                         overwrite=a.overwrite)
    print(folder)


if __name__ == '__main__':
    sys.exit(run_cli(main))
