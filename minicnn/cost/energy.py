"""THE energy table of the cost ledger: picojoules per operation and per memory access.

Source: M. Horowitz, "Computing's energy problem (and what we can do about
it)", ISSCC 2014, 45 nm CMOS at 0.9 V. Measured entries (pJ per operation)::

    operation     int8   int16  int32   fp16   fp32
    add           0.03   0.05   0.1     0.4    0.9
    mult          0.2     --    3.1     1.1    3.7

    memory, per 64-bit access:  8 KB cache 10 pJ, 32 KB cache 20 pJ,
                                1 MB cache 100 pJ, DRAM 1.3-2.6 nJ

Derived entries (not in the paper; how they are made):

* **Fixed-point multiply of b bits** (b not 8 or 32): an array multiplier's
  area and energy grow with the number of partial-product bits, ~ b**2, so
  ``E_mult(b) = E_mult(a) * (b / a)**2`` with ``a`` the smallest measured
  width >= b (8 or 32; a = 32 above 32 bits). Examples: int16 mult =
  3.1 * (16/32)**2 = 0.775 pJ; int4 mult = 0.2 * (4/8)**2 = 0.05 pJ; int2 =
  0.0125 pJ. (Check of the rule on measured data: 0.2 * (32/8)**2 = 3.2 pJ
  against the measured 3.1 pJ for int32.)
* **Fixed-point add of b bits** (b not 8, 16, 32): a ripple adder is linear
  in b: linear interpolation between the measured widths, and
  ``E_add(b) = 0.03 * b / 8`` below 8 bits, ``0.1 * b / 32`` above 32.
  int4 add = 0.015 pJ, int24 add = 0.075 pJ.
* **Floating point of other widths** (b not 16 or 32): same rules from the
  fp16/fp32 entries (mult quadratic from the smallest measured width >= b,
  add linear). Only fp16/fp32 are measured; fp8 mult = 1.1 * (8/16)**2 =
  0.275 pJ and fp8 add = 0.2 pJ are rough.

Composite costs, the choices the ledger makes:

* **MAC** (multiply-accumulate) in floating point of b bits = one b-bit mult
  + one b-bit add (fp32 MAC = 3.7 + 0.9 = 4.6 pJ, fp16 MAC = 1.5 pJ).
* **MAC in b-bit fixed point** = one b-bit mult + one add at the accumulator
  width, ``accumulator_bits`` = 32 by default (products of b-bit numbers
  need 2b bits and sums of thousands of them need more; int8 GEMMs
  accumulate in int32): int8 MAC = 0.2 + 0.1 = 0.3 pJ, int16 MAC = 0.875 pJ.
* **Elementwise op** (BatchNorm arithmetic, ReLU, pooling, residual add,
  optimizer update) = one add at the precision of the tensor it produces
  (a compare, a max or an add cost about the same; multiplies inside
  elementwise formulas are also charged as adds -- a simplification that
  undercounts them; elementwise ops are a small part of the total).
* **Memory**: every byte the bytes model counts (see ``minicnn.cost``) costs
  ``E_access / 8`` at the chosen memory level. Default level: ``dram`` at
  the low end, 1.3 nJ per 64-bit access (162.5 pJ per byte). Justification:
  the bytes model counts *compulsory* traffic with no reuse between layers,
  i.e. every tensor goes to and comes back from main memory once per phase;
  the activations of a training batch (tens to hundreds of MB for a CIFAR
  ResNet at batch 128) do not fit in on-chip SRAM, so DRAM is the level
  they come from, and taking the low end keeps the memory share
  conservative. Choose ``memory_level="cache_1mb"`` (or 8kb/32kb) to model
  an accelerator that keeps tensors on chip, or set ``dram=2600`` for the
  high end.

Override any entry: ``EnergyTable(fp32_mult=3.0, memory_level="cache_1mb")``
or ``EnergyTable.from_json("my_table.json")`` with a JSON object of the same
keys (unknown keys are an error).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

from .formats import FP32, TensorFormat

#: the memory levels an EnergyTable knows (field names, pJ per 64-bit access)
MEMORY_LEVELS = ("cache_8kb", "cache_32kb", "cache_1mb", "dram")


@dataclass
class EnergyTable:
    """Energy per operation / per 64-bit memory access, in picojoules (Horowitz, ISSCC 2014)."""

    # arithmetic, pJ per operation (measured, 45 nm)
    int8_add: float = 0.03
    int8_mult: float = 0.2
    int16_add: float = 0.05
    int32_add: float = 0.1
    int32_mult: float = 3.1
    fp16_add: float = 0.4
    fp16_mult: float = 1.1
    fp32_add: float = 0.9
    fp32_mult: float = 3.7
    # memory, pJ per 64-bit access
    cache_8kb: float = 10.0
    cache_32kb: float = 20.0
    cache_1mb: float = 100.0
    dram: float = 1300.0
    # choices
    memory_level: str = "dram"
    accumulator_bits: int = 32

    def __post_init__(self):
        if self.memory_level not in MEMORY_LEVELS:
            raise ValueError(f"EnergyTable: memory_level must be one of {', '.join(MEMORY_LEVELS)}, "
                             f"got {self.memory_level!r}")
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name != "memory_level" and (not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0):
                raise ValueError(f"EnergyTable: {f.name} must be a number >= 0, got {v!r}")
        if int(self.accumulator_bits) != self.accumulator_bits or self.accumulator_bits < 1:
            raise ValueError(f"EnergyTable: accumulator_bits must be a positive integer, got {self.accumulator_bits}")

    # -- construction --------------------------------------------------------------
    @classmethod
    def from_json(cls, path: str) -> "EnergyTable":
        """Read overrides from a JSON object {entry: value}; missing entries keep their defaults."""
        try:
            with open(path) as f:
                data = json.load(f)
        except OSError as e:
            raise ValueError(f"cannot read energy table {path}: {e.strerror}") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"energy table {path} is not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise ValueError(f"energy table {path} must hold a JSON object of entries")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"energy table {path}: unknown entries {', '.join(unknown)} "
                             f"(known: {', '.join(sorted(known))})")
        return cls(**data)

    def to_dict(self) -> dict:
        return asdict(self)

    # -- arithmetic ----------------------------------------------------------------
    def add_pj(self, fmt: TensorFormat = FP32) -> float:
        """One add at ``fmt``'s precision (linear in the width between measured points)."""
        if fmt.fixed:
            return _linear(fmt.bits, {8: self.int8_add, 16: self.int16_add, 32: self.int32_add})
        return _linear(fmt.bits, {16: self.fp16_add, 32: self.fp32_add})

    def mult_pj(self, fmt: TensorFormat = FP32) -> float:
        """One multiply at ``fmt``'s precision (quadratic in the width from a measured point)."""
        if fmt.fixed:
            return _quadratic(fmt.bits, {8: self.int8_mult, 32: self.int32_mult})
        return _quadratic(fmt.bits, {16: self.fp16_mult, 32: self.fp32_mult})

    def mac_pj(self, fmt: TensorFormat = FP32) -> float:
        """One multiply-accumulate: mult + add (fixed point: the add is at ``accumulator_bits``)."""
        if fmt.fixed:
            acc = TensorFormat(bits=max(int(self.accumulator_bits), fmt.bits), fixed=True)
            return self.mult_pj(fmt) + self.add_pj(acc)
        return self.mult_pj(fmt) + self.add_pj(fmt)

    def op_pj(self, fmt: TensorFormat = FP32) -> float:
        """One elementwise operation: charged as one add at the tensor's precision."""
        return self.add_pj(fmt)

    # -- memory --------------------------------------------------------------------
    def access_pj(self) -> float:
        """Energy of one 64-bit access at the chosen memory level."""
        return float(getattr(self, self.memory_level))

    def byte_pj(self) -> float:
        """Energy per byte moved: one 64-bit access moves 8 bytes."""
        return self.access_pj() / 8.0


def _linear(bits: int, measured: dict[int, float]) -> float:
    """Linear interpolation between measured widths; proportional to the width outside them."""
    if bits in measured:
        return measured[bits]
    ws = sorted(measured)
    if bits < ws[0]:
        return measured[ws[0]] * bits / ws[0]
    if bits > ws[-1]:
        return measured[ws[-1]] * bits / ws[-1]
    lo = max(w for w in ws if w < bits)
    hi = min(w for w in ws if w > bits)
    t = (bits - lo) / (hi - lo)
    return measured[lo] + t * (measured[hi] - measured[lo])


def _quadratic(bits: int, measured: dict[int, float]) -> float:
    """E(b) = E(a) * (b/a)**2 with a the smallest measured width >= b (the largest above all)."""
    if bits in measured:
        return measured[bits]
    ws = sorted(measured)
    a = next((w for w in ws if w >= bits), ws[-1])
    return measured[a] * (bits / a) ** 2
