"""minicnn: a from-scratch CNN training framework in NumPy and numba that
counts the cost of training (MACs, bytes moved, energy) layer by layer.

Packages: layers, kernels, models, data, training, methods, cost, stats, plots;
the command line lives in ``minicnn.cli``.
"""
__version__ = "0.1.0"
