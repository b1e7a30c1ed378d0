#!/usr/bin/env python
"""Download CIFAR-10 / CIFAR-100 from the official site, verify the MD5, unpack safely.

    python data_scripts/download_cifar.py --dataset cifar10 --out data
    python data_scripts/download_cifar.py --dataset cifar100 --format binary --out data
    python data_scripts/download_cifar.py --dataset cifar10 --out data --from-dir ~/Downloads

--out DIR is a data root: the files land in DIR/cifar-10-batches-py/ (or
cifar-10-batches-bin/, cifar-100-python/, cifar-100-binary/), which is what
``minicnn --data-dir DIR`` expects. An existing good copy is kept as is.
Offline? Copy the archive from elsewhere and pass --from-dir (the archive, its
directory, or an already unpacked copy).
"""
import sys
from pathlib import Path

try:
    from minicnn.data.prepare import OneLineParser, fetch_cifar, run_cli
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from minicnn.data.prepare import OneLineParser, fetch_cifar, run_cli


def main(argv=None):
    p = OneLineParser(prog='download_cifar.py', description=__doc__.split('\n\n')[0])
    p.add_argument('--dataset', required=True, choices=['cifar10', 'cifar100'])
    p.add_argument('--format', default='python', choices=['python', 'binary'],
                   help='official python (pickle) or binary version (default: python)')
    p.add_argument('--out', required=True, help='data root directory to unpack into')
    p.add_argument('--from-dir', default=None,
                   help='use a local archive file, a directory holding it, or an unpacked copy instead of downloading')
    p.add_argument('--timeout', type=float, default=60.0, help='network timeout in seconds (default 60)')
    a = p.parse_args(argv)
    folder = fetch_cifar(a.dataset, a.out, format=a.format, from_dir=a.from_dir, timeout=a.timeout)
    print(folder)


if __name__ == '__main__':
    sys.exit(run_cli(main))
