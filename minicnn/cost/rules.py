"""Counting rules: one small class per layer type, in a registry keyed by layer class.

A rule has three methods, each returning the :class:`Counts` of one piece of
work, from the *actual* shapes (and non-zero counts, for sparse formats) the
ledger saw, through a :class:`Meter` that knows the formats::

    forward(m, layer, w)              the forward pass (train or eval mode: w.training)
    backward_input(m, layer, w)       computing dL/dx
    backward_weight(m, layer, w, p)   computing dL/d(param p), one param at a time

``w`` is a :class:`Work`: the forward input/output ``x, y``, the gradients
``dy = dL/dy`` and ``dx = dL/dx`` (all :class:`Tensor`), whether the
forward ran in train mode, and which params get a gradient this backward.
Format roles: ``input output weight bias grad_output grad_input
grad_weight grad_bias``.

Notation: N batch, C channels, E(t) = elements of tensor t, K = Cin*kh*kw
(a conv's dot-product length), "count(dy)" = dy's non-zeros when
grad_output's format is sparse (only stored non-zeros are multiplied),
else E(dy).

MACs and elementwise ops (the rules follow what minicnn's layers compute;
see each layer's docstring)::

    layer          MACs                              elementwise ops
    Conv2d  fwd    E(y)*K = N*Ho*Wo*Cout*Cin*kh*kw   bias add: E(y) (with a bias)
            dx     count(dy)*K                       --
            dW     count(dy)*K                       --
            db     --                                sum of dy: count(dy)
    Linear  fwd    N*in*out                          bias add: N*out
            dx/dW  count(dy)*in  each                --
            db     --                                count(dy)
    BatchNorm2d fwd train  --     6 per E(x) (shifted one-pass mean/var: 4; y = x*scale + shift: 2)
                                  + 18 per channel (mean, var 5; inv_std 3; scale, shift 3;
                                  running mean 3, running var 4)
            fwd eval       --     2 per E(x) + 6 per channel (inv_std, scale, shift)
            reductions     --     one pass computing both sums(dy) and sum(dy*(x - mu)): 4 per E;
                                  needed by dW, db and by dx after a train-mode forward
            dx (train)     --     dx = A*dy + B*x + C: 4 per E + 8 per channel
            dx (eval)      --     dx = A*dy: 2 per E
    ReLU    fwd / dx       --     1 per E (max; select by y > 0)
    MaxPool2d fwd          --     kh*kw - 1 compares per output
            dx             --     1 add per output (dy into dx at the argmax)
    AvgPool2d fwd          --     kh*kw per output (kh*kw - 1 adds, 1 scale)
            dx             --     kh*kw + 1 per output (1 scale, kh*kw adds)
    GlobalAvgPool2d fwd    --     1 per input element; dx: 1 per output (scale; then broadcast)
    Flatten                --     none, and no bytes (a view)
    residual add (BasicBlock): fwd 1 per added element; dx = dx_main + dx_shortcut 1 per element
    LSTMCell (one step; N batch, I input, H hidden; a sigmoid or tanh counts 4 ops:
            exp, add, divide, select)
            fwd    N*4H*(I+H)                        36 per N*H: a = two GEMMs + two biases 12,
                                                     3 sigmoids + 1 tanh 16, c' = f*c + i*g 3,
                                                     tanh(c') 4, h' = o*tanh(c') 1
            step   N*4H*H (dh_prev)                  23 per N*H: carried dh 1, dc 5, da 16, dc_prev 1
            dx     N*4H*I                            --
            dW_ih  N*4H*I    dW_hh N*4H*H            db_ih: sum of da 4*N*H; db_hh: a copy of it, 0
    GateHead (p = sigmoid(x w + b), x (N, I))
            fwd    N*I                               5 per sample (bias 1, sigmoid 4)
            dz     --                                3 per sample (dz = dp*p*(1-p))
            dx, dW N*I each                          db: N

"step" and "dz" are computed once per backward whatever is asked for: they
are charged to backward_input when dL/dx is computed, else to the first
parameter gradient computed (as BatchNorm's reduction pass below).
    update (SGD)           --     per element: p -= lr*g 2, each state tensor 2, weight decay 2

BatchNorm's reduction pass is charged once, to the first of backward_weight
of ``weight``, backward_weight of ``bias``, backward_input that needs it
(the layer computes both sums in one pass whenever any of them is needed).

Conv2d is counted as the network's work, whatever algorithm computes it: a
3x3 stride-1 conv that minicnn runs by Winograd F(2x2, 3x3)
(``minicnn/kernels/winograd.py``: 4 multiplications per output and input
channel instead of 9, plus the transforms' additions, and no im2col buffer)
is still counted at K = 9*Cin MACs per output and the bytes below. Winograd
saves wall time on this CPU, not counted work: the ledger, its energy
estimate and every method's saving are the same with
``MINICNN_CONV_ALGO=im2col``.

Bytes: each piece of work is one kernel that reads each tensor it needs
once from memory and writes each result once (compulsory traffic; no reuse
between kernels or layers; an implementation's im2col buffer is not
counted). Tensors are charged at their role's format; fp32 tensors with no
role (optimizer state, BatchNorm statistics) at 4 bytes; MaxPool's argmax
(int32) at 4 bytes. Per rule: R = read, W = written::

    Conv2d/Linear fwd   R x, weight, bias; W y
                  dx    R dy, weight; W dx
                  dW    R dy, x (the cached input / columns); W dW
                  db    R dy; W db
    BatchNorm2d   fwd   R x, gamma, beta; W y; train: R+W running mean and var, W saved mean, inv_std
                                               eval: R running mean and var
                  pass  R dy, x (the reduction pass, where it is charged); each param grad: W C values
                  dx    train: R dy, x, gamma, mean, inv_std; W dx.   eval: R dy, gamma, inv_std; W dx
    ReLU          fwd   R x; W y                 dx  R dy, y (the cache); W dx
    MaxPool2d     fwd   R x; W y, argmax         dx  R dy, argmax; W dx
    AvgPool2d, GlobalAvgPool2d: fwd R x; W y     dx  R dy; W dx
    residual add  fwd   R h, s; W h+s            dx  R dx_main, dx_shortcut; W dx
    LSTMCell      fwd   R x, h, c, W_ih, W_hh, b_ih, b_hh; W h', c' and the cache (i, f, g, o, tanh c': 5NH)
                  step  R dh', carried dh and dc, the cache, c, W_hh; W dh_prev, dc_prev
                  dx    R da (4NH), W_ih; W dx     dW_ih R da, x; W dW_ih   dW_hh R da, h; W dW_hh
                  db    R da; W db_ih, db_hh
    GateHead      fwd   R x, w, b; W p           dz  R dp, p; W dz
                  dx    R dz, w; W dx            dW  R dz, x; W dW       db R dz; W db
    update              R+W param (fp32), R grad, R+W each state tensor (fp32)

Adding a layer type: subclass :class:`Rule` and decorate it with
``@register("MyLayer")`` (the class *name*, so that rules need not import
layers; a subclass of a registered class uses its rule unless it has its own).
"""
from __future__ import annotations

from dataclasses import dataclass

from .counts import Counts, Meter, Tensor, wider

#: class name -> rule instance
RULES: dict[str, "Rule"] = {}


def register(*class_names: str):
    """Class decorator: use this rule for layers of the given class names."""
    def deco(cls):
        for n in class_names:
            RULES[n] = cls()
        return cls
    return deco


def rule_for(layer) -> "Rule | None":
    """The rule of ``layer``'s class, or of its nearest registered base class."""
    for cls in type(layer).__mro__:
        r = RULES.get(cls.__name__)
        if r is not None:
            return r
    return None


@dataclass(frozen=True)
class Work:
    """The tensors of one layer's forward/backward, as the rules see them."""
    x: Tensor                   # forward input
    y: Tensor                   # forward output
    dy: Tensor | None = None    # dL/dy (backward only)
    dx: Tensor | None = None    # dL/dx, if computed
    training: bool = True       # the forward ran in train mode
    grads: frozenset = frozenset()   # params whose gradient this backward computes


class Rule:
    """Base rule: no work. Override what the layer type does."""

    def forward(self, m: Meter, layer, w: Work) -> Counts:
        return Counts()

    def backward_input(self, m: Meter, layer, w: Work) -> Counts:
        return Counts()

    def backward_weight(self, m: Meter, layer, w: Work, param: str) -> Counts:
        return Counts()


def _param(layer, name) -> Tensor | None:
    p = layer.params.get(name)
    return None if p is None else Tensor(tuple(p.shape))


def _vec(c: int) -> Tensor:
    """A per-channel fp32 vector (statistics)."""
    return Tensor((c,))


# --------------------------------------------------------------------------------------------
# layers with MACs: a GEMM of length k per output element

class _GemmRule(Rule):
    """Conv2d and Linear share their structure; only the dot-product length differs."""

    def length(self, layer) -> int:
        raise NotImplementedError

    def forward(self, m, layer, w):
        k, bias = self.length(layer), _param(layer, "bias")
        return m.counts(macs=w.y.size * k, mac_fmt=wider(m.fmt("input"), m.fmt("weight")),
                        ops=w.y.size if bias is not None else 0, op_fmt=m.fmt("output"),
                        moved=[("input", w.x), ("weight", _param(layer, "weight")), ("bias", bias),
                               ("output", w.y)])

    def backward_input(self, m, layer, w):
        return m.counts(macs=w.dy.count * self.length(layer), mac_fmt=wider(m.fmt("grad_output"), m.fmt("weight")),
                        moved=[("grad_output", w.dy), ("weight", _param(layer, "weight")), ("grad_input", w.dx)])

    def backward_weight(self, m, layer, w, param):
        if param == "weight":
            return m.counts(macs=w.dy.count * self.length(layer),
                            mac_fmt=wider(m.fmt("grad_output"), m.fmt("input")),
                            moved=[("grad_output", w.dy), ("input", w.x), ("grad_weight", _param(layer, "weight"))])
        return m.counts(ops=w.dy.count, op_fmt=m.fmt("grad_bias"),
                        moved=[("grad_output", w.dy), ("grad_bias", _param(layer, "bias"))])


@register("Conv2d")
class ConvRule(_GemmRule):
    """im2col + GEMM: each output element is a dot product of length Cin*kh*kw."""

    def length(self, layer):
        kh, kw = layer.kernel_size
        return layer.in_channels * kh * kw


@register("Linear")
class LinearRule(_GemmRule):
    """y = x W^T + b: each output element is a dot product of length in_features."""

    def length(self, layer):
        return layer.in_features


# --------------------------------------------------------------------------------------------
# elementwise layers

@register("BatchNorm2d")
class BatchNormRule(Rule):
    """Batch statistics in train mode, running statistics in eval mode."""

    def forward(self, m, layer, w):
        c = w.x.shape[1]
        params = [("input", w.x), ("weight", _param(layer, "weight")), ("bias", _param(layer, "bias")),
                  ("output", w.y)]
        if w.training:
            return m.counts(ops=6 * w.x.size + 18 * c, op_fmt=m.fmt("output"), moved=params + [(None, _vec(c))] * 6)
        return m.counts(ops=2 * w.x.size + 6 * c, op_fmt=m.fmt("output"), moved=params + [(None, _vec(c))] * 2)

    @staticmethod
    def reduction_owner(w: Work) -> str | None:
        """Which piece of work pays the reduction pass: 'weight', 'bias', 'input' or None."""
        for who in ("weight", "bias"):
            if who in w.grads:
                return who
        return "input" if (w.training and w.dx is not None) else None

    def _reduction(self, m, w: Work, role: str) -> Counts:
        return m.counts(ops=4 * w.dy.size, op_fmt=m.fmt(role), moved=[("grad_output", w.dy), ("input", w.x)])

    def backward_input(self, m, layer, w):
        c = w.dy.shape[1]
        if not w.training:        # running statistics are constants: dx = gamma * inv_std * dy
            return m.counts(ops=2 * w.dy.size, op_fmt=m.fmt("grad_input"),
                            moved=[("grad_output", w.dy), ("weight", _param(layer, "weight")), (None, _vec(c)),
                                   ("grad_input", w.dx)])
        cost = m.counts(ops=4 * w.dy.size + 8 * c, op_fmt=m.fmt("grad_input"),
                        moved=[("grad_output", w.dy), ("input", w.x), ("weight", _param(layer, "weight")),
                               (None, _vec(c)), (None, _vec(c)), ("grad_input", w.dx)])
        if self.reduction_owner(w) == "input":
            cost += self._reduction(m, w, "grad_input")
        return cost

    def backward_weight(self, m, layer, w, param):
        role = "grad_weight" if param == "weight" else "grad_bias"
        cost = m.counts(ops=w.dy.shape[1] if param == "weight" else 0,   # dgamma = inv_std * sum: 1 per channel
                        op_fmt=m.fmt(role), moved=[(role, _param(layer, param))])
        if self.reduction_owner(w) == param:
            cost += self._reduction(m, w, role)
        return cost


@register("ReLU")
class ReLURule(Rule):
    """y = max(x, 0); dx = dy where y > 0 (the cache is y)."""

    def forward(self, m, layer, w):
        return m.counts(ops=w.x.size, op_fmt=m.fmt("output"), moved=[("input", w.x), ("output", w.y)])

    def backward_input(self, m, layer, w):
        return m.counts(ops=w.dy.size, op_fmt=m.fmt("grad_input"),
                        moved=[("grad_output", w.dy), ("output", w.y), ("grad_input", w.dx)])


def _int32(m: Meter, t: Tensor) -> Counts:
    """Moving an int32 index tensor (MaxPool's argmax)."""
    nbytes = 4 * t.size
    return Counts(0, 0, nbytes, nbytes * m.energy.byte_pj())


@register("MaxPool2d")
class MaxPoolRule(Rule):
    """Max over each window, argmax saved (int32); backward adds dy into dx at the argmax."""

    def forward(self, m, layer, w):
        kh, kw = layer.kernel_size
        return m.counts(ops=w.y.size * (kh * kw - 1), op_fmt=m.fmt("output"),
                        moved=[("input", w.x), ("output", w.y)]) + _int32(m, w.y)

    def backward_input(self, m, layer, w):
        return m.counts(ops=w.dy.size, op_fmt=m.fmt("grad_input"),
                        moved=[("grad_output", w.dy), ("grad_input", w.dx)]) + _int32(m, w.dy)


@register("AvgPool2d")
class AvgPoolRule(Rule):
    def forward(self, m, layer, w):
        kh, kw = layer.kernel_size
        return m.counts(ops=w.y.size * kh * kw, op_fmt=m.fmt("output"), moved=[("input", w.x), ("output", w.y)])

    def backward_input(self, m, layer, w):
        kh, kw = layer.kernel_size
        return m.counts(ops=w.dy.size * (kh * kw + 1), op_fmt=m.fmt("grad_input"),
                        moved=[("grad_output", w.dy), ("grad_input", w.dx)])


@register("GlobalAvgPool2d")
class GlobalAvgPoolRule(Rule):
    def forward(self, m, layer, w):
        return m.counts(ops=w.x.size, op_fmt=m.fmt("output"), moved=[("input", w.x), ("output", w.y)])

    def backward_input(self, m, layer, w):
        return m.counts(ops=w.dy.size, op_fmt=m.fmt("grad_input"), moved=[("grad_output", w.dy), ("grad_input", w.dx)])


@register("Flatten")
class FlattenRule(Rule):
    """A reshape: a view of the same memory, no work."""


@register("BasicBlock")
class ResidualAddRule(Rule):
    """A residual block's own work: the add h + s (forward), dx_main + dx_shortcut (backward).

    The block is a container: its layers are counted on their own. Here
    ``w.y`` and ``w.dx`` describe the *added region only* (the kept samples
    when SLU skips some), which the ledger passes. Formats: the block's
    ``output`` (forward) and ``grad_input`` (backward) roles.
    """

    def forward(self, m, layer, w):
        return m.counts(ops=w.y.size, op_fmt=m.fmt("output"), moved=[("output", w.y)] * 3)

    def backward_input(self, m, layer, w):
        return m.counts(ops=w.dx.size, op_fmt=m.fmt("grad_input"), moved=[("grad_input", w.dx)] * 3)


# --------------------------------------------------------------------------------------------
# the gate network of SLU (minicnn.layers.recurrent): applied once per gated block, weights
# shared across those steps; the ledger counts each step's forward and backward

def _once_owner(w: Work, params: tuple) -> str | None:
    """Who pays the work a backward does whatever is asked: 'input' when dL/dx is computed,
    else the first of ``params`` whose gradient is, else nobody."""
    if w.dx is not None:
        return "input"
    return next((p for p in params if p in w.grads), None)


@register("LSTMCell")
class LSTMCellRule(Rule):
    """One step of torch.nn.LSTMCell (see the table above)."""

    def forward(self, m, layer, w):
        (N, I), H = w.x.shape, layer.hidden_size
        nh, g4 = Tensor((N, H)), Tensor((N, 4 * H))
        return m.counts(macs=N * 4 * H * (I + H), mac_fmt=wider(m.fmt("input"), m.fmt("weight")),
                        ops=36 * N * H, op_fmt=m.fmt("output"),
                        moved=[("input", w.x), (None, nh), (None, nh)]
                        + [("weight", _param(layer, p)) for p in ("weight_ih", "weight_hh")]
                        + [("bias", _param(layer, p)) for p in ("bias_ih", "bias_hh")]
                        + [("output", w.y), (None, nh), (None, g4), (None, nh)])

    def _step(self, m, layer, w, role) -> Counts:
        N, H = w.y.shape
        nh = Tensor((N, H))
        return m.counts(macs=N * 4 * H * H, mac_fmt=wider(m.fmt("grad_output"), m.fmt("weight")),
                        ops=23 * N * H, op_fmt=m.fmt(role),
                        moved=[("grad_output", w.dy), (None, nh), (None, nh), (None, Tensor((N, 4 * H))),
                               (None, nh), (None, nh), ("weight", _param(layer, "weight_hh")), (None, nh),
                               (None, nh)])

    def backward_input(self, m, layer, w):
        N, H = w.y.shape
        cost = m.counts(macs=N * 4 * H * layer.input_size, mac_fmt=wider(m.fmt("grad_output"), m.fmt("weight")),
                        moved=[(None, Tensor((N, 4 * H))), ("weight", _param(layer, "weight_ih")),
                               ("grad_input", w.dx)])
        return cost + self._step(m, layer, w, "grad_input")

    def backward_weight(self, m, layer, w, param):
        N, H = w.y.shape
        da = Tensor((N, 4 * H))
        if param == "weight_ih":
            cost = m.counts(macs=N * 4 * H * layer.input_size, mac_fmt=wider(m.fmt("grad_output"), m.fmt("input")),
                            moved=[(None, da), ("input", w.x), ("grad_weight", _param(layer, param))])
        elif param == "weight_hh":
            cost = m.counts(macs=N * 4 * H * H, mac_fmt=m.fmt("grad_output"),
                            moved=[(None, da), (None, Tensor((N, H))), ("grad_weight", _param(layer, param))])
        elif param == "bias_ih":
            cost = m.counts(ops=N * 4 * H, op_fmt=m.fmt("grad_bias"),
                            moved=[(None, da), ("grad_bias", _param(layer, param))])
        else:                                                      # bias_hh: the same sum, copied
            cost = m.counts(moved=[("grad_bias", _param(layer, param))])
        if _once_owner(w, ("weight_ih", "weight_hh", "bias_ih", "bias_hh")) == param:
            cost += self._step(m, layer, w, "grad_weight")
        return cost


@register("GateHead")
class GateHeadRule(Rule):
    """p = sigmoid(x w + b), one value per sample."""

    def forward(self, m, layer, w):
        N, I = w.x.shape
        return m.counts(macs=N * I, mac_fmt=wider(m.fmt("input"), m.fmt("weight")), ops=5 * N,
                        op_fmt=m.fmt("output"),
                        moved=[("input", w.x), ("weight", _param(layer, "weight")), ("bias", _param(layer, "bias")),
                               ("output", w.y)])

    def _dz(self, m, w, role) -> Counts:
        return m.counts(ops=3 * w.y.size, op_fmt=m.fmt(role),
                        moved=[("grad_output", w.dy), ("output", w.y), (None, w.y)])

    def backward_input(self, m, layer, w):
        return m.counts(macs=w.x.size, mac_fmt=wider(m.fmt("grad_output"), m.fmt("weight")),
                        moved=[(None, w.y), ("weight", _param(layer, "weight")), ("grad_input", w.dx)]) \
            + self._dz(m, w, "grad_input")

    def backward_weight(self, m, layer, w, param):
        if param == "weight":
            cost = m.counts(macs=w.x.size, mac_fmt=wider(m.fmt("grad_output"), m.fmt("input")),
                            moved=[(None, w.y), ("input", w.x), ("grad_weight", _param(layer, "weight"))])
        else:
            cost = m.counts(ops=w.y.size, op_fmt=m.fmt("grad_bias"),
                            moved=[(None, w.y), ("grad_bias", _param(layer, "bias"))])
        if _once_owner(w, ("weight", "bias")) == param:
            cost += self._dz(m, w, "grad_weight")
        return cost


def residual_rows(block, n: int) -> int:
    """How many of the ``n`` samples went through ``block``'s add in its last forward.

    Read from what the block publishes (``executed_count``; see ``BasicBlock``).
    """
    return int(getattr(block, "executed_count", n))


def update_counts(m: Meter, layer, param: str, n_state: int, weight_decay: bool = False,
                  grad: Tensor | None = None) -> Counts:
    """One SGD update of ``layer.params[param]`` (``minicnn.training.optim``, steady state).

    Per element: ``p -= lr * g`` 2 ops; each optimizer state tensor (the
    momentum buffer ``buf = mu*buf + g``) 2 ops; weight decay ``g + wd*p``
    2 ops. Bytes: R and W the parameter (fp32 master copy), R the gradient
    (at its grad_weight/grad_bias format; ``grad`` gives its nnz when that
    format is sparse), R and W each state tensor (fp32).
    """
    p = _param(layer, param)
    ops = p.size * (2 + 2 * n_state + (2 if weight_decay else 0))
    role = "grad_weight" if param == "weight" else "grad_bias"
    return m.counts(ops=ops, moved=[(None, p), (None, p), (role, grad if grad is not None else p)]
                    + [(None, p)] * (2 * n_state))
