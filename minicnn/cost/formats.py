"""Tensor formats: how a method says a tensor is stored, so the ledger counts it at its real size.

A method declares the format of a tensor it produces for a (layer, role)
pair with ``state.formats.set(layer, role, TensorFormat(...))``; the ledger
(``minicnn.cost.ledger``) charges bytes and MAC energy at that format.
Unset pairs are fp32.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TensorFormat:
    """How a tensor is stored, for the ledger's byte and energy counts.

    bits:    bits per value (32 = fp32; 8 or 16 = fixed point of that width)
    fixed:   True for a fixed-point (integer) format, False for floating point
    sparse:  True if only non-zeros are stored (values + indices)
    index_bits: bits per stored index of a sparse tensor
    """
    bits: int = 32
    fixed: bool = False
    sparse: bool = False
    index_bits: int = 32


FP32 = TensorFormat()


class FormatTable:
    """Formats that methods declared for (layer, role) pairs; FP32 otherwise.

    Roles: ``input``, ``output``, ``weight``, ``bias``, ``grad_output``,
    ``grad_input``, ``grad_weight``, ``grad_bias``.
    """

    def __init__(self):
        self._formats: dict[tuple[str, str], TensorFormat] = {}

    def set(self, layer, role: str, fmt: TensorFormat) -> None:
        self._formats[(layer.name, role)] = fmt

    def clear(self, layer=None) -> None:
        if layer is None:
            self._formats.clear()
        else:
            for k in [k for k in self._formats if k[0] == layer.name]:
                del self._formats[k]

    def get(self, layer, role: str) -> TensorFormat:
        return self._formats.get((layer.name, role), FP32)

    def __bool__(self):
        return bool(self._formats)
