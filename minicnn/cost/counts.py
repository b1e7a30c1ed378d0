"""Small value types of the ledger: :class:`Counts`, :class:`Tensor` and :class:`Meter`.

* ``Counts`` -- the cost of some work: MACs, elementwise ops, bytes, energy.
* ``Tensor`` -- what the counting rules know about a tensor: its shape and,
  when its format stores only non-zeros, how many there are.
* ``Meter``  -- turns (MACs, ops, bytes of tensors in formats) into Counts,
  using the FormatTable and the EnergyTable; the rules call it.
"""
from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import numpy as np

from ..kernels.elementwise import count_nonzero
from .formats import FP32, FormatTable, TensorFormat
from .energy import EnergyTable

#: training phases, in the order a step runs them; ``total`` sums these
TRAIN_PHASES = ("forward", "backward_input", "backward_weight", "update")
#: every phase the ledger keeps (``eval`` = forward passes in eval mode, not part of ``total``)
PHASES = TRAIN_PHASES + ("eval",)


@dataclass
class Counts:
    """Cost of some work.

    macs:      multiply-accumulates (exact integer)
    ops:       elementwise operations (exact integer)
    bytes:     bytes read + written (an int; a float when sub-byte formats are involved)
    energy_pj: energy in picojoules (arithmetic + memory)
    """
    macs: int = 0
    ops: int = 0
    bytes: int | float = 0
    energy_pj: float = 0.0

    def __add__(self, other: "Counts") -> "Counts":
        return Counts(self.macs + other.macs, self.ops + other.ops,
                      _tidy(self.bytes + other.bytes), self.energy_pj + other.energy_pj)

    def __iadd__(self, other: "Counts") -> "Counts":
        self.macs += other.macs
        self.ops += other.ops
        self.bytes = _tidy(self.bytes + other.bytes)
        self.energy_pj += other.energy_pj
        return self

    def scaled(self, k: int) -> "Counts":
        """This work done ``k`` times."""
        return Counts(self.macs * k, self.ops * k, _tidy(self.bytes * k), self.energy_pj * k)

    def copy(self) -> "Counts":
        return Counts(self.macs, self.ops, self.bytes, self.energy_pj)

    def to_dict(self) -> dict:
        return {"macs": int(self.macs), "ops": int(self.ops),
                "bytes": self.bytes if isinstance(self.bytes, int) else float(self.bytes),
                "energy_pj": float(self.energy_pj)}

    @classmethod
    def from_dict(cls, d: dict) -> "Counts":
        return cls(int(d["macs"]), int(d["ops"]), _tidy(d["bytes"]), float(d["energy_pj"]))

    def __bool__(self):
        return bool(self.macs or self.ops or self.bytes or self.energy_pj)


def _tidy(b):
    """Keep byte counts integers whenever they are whole numbers."""
    if isinstance(b, (int, np.integer)):
        return int(b)
    return int(b) if float(b).is_integer() else float(b)


@dataclass(frozen=True)
class Tensor:
    """Shape of a tensor and, if known, its number of non-zeros (``nnz``).

    ``nnz`` is only measured when the tensor's format is sparse (counting
    non-zeros costs a pass over the data); otherwise it is None and the
    tensor is taken as dense.
    """
    shape: tuple
    nnz: int | None = None

    @property
    def size(self) -> int:
        return math.prod(self.shape)       # exact Python int (1 for shape ()); np.prod is ~10x slower on a tuple

    @property
    def count(self) -> int:
        """Values that take part in work: nnz for a measured sparse tensor, else size."""
        return self.size if self.nnz is None else self.nnz

    @staticmethod
    def of(array, fmt: TensorFormat = FP32) -> "Tensor | None":
        """Describe an ndarray (None stays None); non-zeros are counted only if ``fmt`` is sparse
        (or taken from :func:`note_nonzeros` when the array's writer counted them)."""
        if array is None:
            return None
        nnz = None
        if fmt.sparse:
            nnz = _noted_nonzeros(array)
            if nnz is None:
                nnz = count_nonzero(array)
        return Tensor(tuple(int(d) for d in array.shape), nnz)


#: the last array whose writer counted its non-zeros as it wrote them: (weak reference, count). One slot:
#: gradprune's pruning kernel counts what it writes, and the conv that consumes that array next is where the
#: ledger would count the same non-zeros again (a full pass over the gradient, ~5% of a resnet20 step).
_noted: tuple = (None, 0)


def note_nonzeros(array: np.ndarray, nnz: int) -> None:
    """Tell the ledger that ``array`` (just written, not to be changed in place) holds ``nnz`` non-zeros.

    Kept for this array object only and until the next note; :meth:`Tensor.of` then reads the count instead
    of counting. A method that writes a sparse tensor and counts it as it writes calls this.
    """
    global _noted
    _noted = (weakref.ref(array), int(nnz))


def _noted_nonzeros(array) -> int | None:
    ref, nnz = _noted
    return nnz if ref is not None and ref() is array else None


def format_bytes(fmt: TensorFormat, t: Tensor) -> int | float:
    """Bytes to store ``t`` in ``fmt``: size * bits/8 dense, nnz * (bits + index_bits)/8 sparse."""
    if fmt.sparse:
        bits = t.count * (fmt.bits + fmt.index_bits)
    else:
        bits = t.size * fmt.bits
    return bits // 8 if bits % 8 == 0 else bits / 8


def wider(a: TensorFormat, b: TensorFormat) -> TensorFormat:
    """The wider of two operand formats (more bits; floating point wins a tie)."""
    return max(a, b, key=lambda f: (f.bits, not f.fixed))


class Meter:
    """Turns work into :class:`Counts` for one layer, with formats and energies.

    ``fmt(role)`` is the layer's format for a role (FP32 unless a method set
    another in the FormatTable). The rules describe work as MACs at a
    format, ops at a format, and a list of ``(role, Tensor)`` pairs read or
    written (``role=None`` means a fixed fp32 tensor such as optimizer
    state or BatchNorm running statistics).
    """

    def __init__(self, formats: FormatTable | None, energy: EnergyTable, layer):
        self.formats, self.energy, self.layer = formats, energy, layer

    def fmt(self, role: "str | TensorFormat | None") -> TensorFormat:
        """The format of ``role`` for this layer; a TensorFormat given instead of a role is used as is."""
        if isinstance(role, TensorFormat):
            return role
        if role is None or not self.formats:
            return FP32
        return self.formats.get(self.layer, role)

    def nbytes(self, role: str | None, t: Tensor) -> int | float:
        return format_bytes(self.fmt(role), t)

    def counts(self, macs: int = 0, mac_fmt: TensorFormat = FP32, ops: int = 0,
               op_fmt: TensorFormat = FP32, moved=()) -> Counts:
        """Counts for ``macs`` MACs at ``mac_fmt``, ``ops`` elementwise ops at ``op_fmt``,
        and the tensors ``moved`` (an iterable of (role, Tensor), each read or written once)."""
        nbytes = 0
        for role, t in moved:
            if t is not None:
                nbytes += self.nbytes(role, t)
        e = self.energy
        energy = macs * e.mac_pj(mac_fmt) + ops * e.op_pj(op_fmt) + nbytes * e.byte_pj()
        return Counts(int(macs), int(ops), _tidy(nbytes), float(energy))
