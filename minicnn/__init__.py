"""minicnn: a from-scratch CNN training framework in NumPy and numba that
counts the cost of training (MACs, bytes moved, energy) layer by layer.

Packages: layers, kernels, models, data, training, methods, cost, stats, plots;
the command line lives in ``minicnn.cli``.
"""
__version__ = "0.1.0"

# The kernels set the process up for speed when first imported (OpenBLAS on one
# thread with minicnn's own GEMM thread pool, numba's OpenMP threads waiting
# passively); this must happen before any numba parallel kernel runs.
from . import kernels  # noqa: E402,F401
