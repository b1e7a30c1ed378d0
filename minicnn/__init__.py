"""minicnn: a from-scratch CNN training framework in NumPy and numba that
counts the cost of training (MACs, bytes moved, energy) layer by layer.

Packages: layers, kernels, models, data, training, methods, cost, stats, quant,
plots, sweep; the command line lives in ``minicnn.cli``.

The packages form layers (:data:`LAYERS`, lowest first). A module imports
only from its own package and from layers below its own, never a private
(``_name``) module or name of another package: a reader can follow any
import downhill and never meet a circle. ``tests/test_imports.py`` walks
every import of every module (``ast``) and holds the package to this order.

Importing minicnn changes nothing process-wide (no thread pool, no BLAS or
malloc setting, no environment variable): the CLI and ``Trainer.fit``
apply minicnn's speed settings for their duration
(:func:`minicnn.kernels.process.speed_settings`).
"""
__version__ = "0.1.0"

#: the layers of the package, lowest first; names are modules or packages directly under ``minicnn``
LAYERS = (
    ("fileio", "hooks"),                    # foundations: import nothing from minicnn
    ("kernels",),                           # numba kernels, GEMMs, the thread pool, process settings
    ("layers",),                            # explicit forward / backward
    ("losses", "gradcheck", "models", "data", "quant", "cost", "stats"),
    ("methods",),                           # training methods, acting through hooks only
    ("training",),                          # the Trainer, run setup, run files, conformance
    ("sweep", "plots", "bench"),
    ("cli",),                               # the command line, on top of everything
    ("__main__",),                          # python -m minicnn
)
