"""Layers applied at several steps of one forward pass, with shared weights:
the LSTM cell and the sigmoid head of SLU's gate network (E2-Train §3.2).

A :class:`StepLayer` may be called ``forward`` T times before its
``backward`` is called T times, in reverse order (backpropagation through
time): each forward pushes its cache onto a stack, each backward pops the
latest one and *adds* its parameter gradients into ``grads``. ``reset()``
starts a new forward pass: it clears the stack, the recurrent state and the
gradients of the previous pass (so ``grads`` is always the sum over the steps
of the last forward pass).

LSTMCell, exactly ``torch.nn.LSTMCell`` (gate order i, f, g, o)::

    a  = x W_ih^T + b_ih + h W_hh^T + b_hh           (N, 4H), split into a_i a_f a_g a_o
    i  = sigmoid(a_i)   f = sigmoid(a_f)   g = tanh(a_g)   o = sigmoid(a_o)
    c' = f * c + i * g
    h' = o * tanh(c')

Backward of one step, given dh' (plus the gradient carried from the next step) and dc'::

    dc   = dc' + dh' * o * (1 - tanh(c')^2)          do = dh' * tanh(c')
    di   = dc * g     df = dc * c     dg = dc * i     dc_prev = dc * f
    da   = [di*i*(1-i), df*f*(1-f), dg*(1-g^2), do*o*(1-o)]
    dW_ih += da^T x   dW_hh += da^T h   db_ih += sum_n da   db_hh += sum_n da
    dx   = da W_ih    dh_prev = da W_hh

Two ways to drive it: ``step(x, (h, c)) -> (h', c')`` and
``backward_step(dh', dc') -> (dx, dh, dc)`` with explicit state (like
PyTorch's ``cell(x, (h, c))``), or ``forward(x) -> h'`` which reads and
writes ``self.state`` (zeros after ``reset()``) and ``backward(dh') -> dx``
which carries (dh, dc) to the previous step itself -- the form the
containers' hook points (and so the cost ledger) can see, x -> y.
Cache per step: x, h, c, the four activations, tanh(c').
Init: U(-1/sqrt(H), 1/sqrt(H)) for all four tensors (PyTorch's default).

GateHead: p = sigmoid(x w^T + b), x (N, in) -> p (N,): a Linear(in, 1)
followed by a sigmoid, the last stage of a gate (SkipNet's ``proj`` +
``prob``, shared by all steps in the official E2-Train RNN gate). Backward:
``dz = dp * p * (1 - p)``, then as Linear. Init as ``torch.nn.Linear``.
"""
from __future__ import annotations

import math

import numpy as np

from ._leaf import as_grad, as_input, positive_int, uniform_init
from .base import Layer, ShapeError


def sigmoid(z: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-z)), without overflow for large |z|."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(z.dtype, copy=False)


class StepLayer(Layer):
    """Base of layers applied at several steps of one forward pass (see module docstring)."""

    def __init__(self, dtype=np.float32):
        super().__init__(dtype)
        self._stack: list = []

    def reset(self) -> None:
        """Start a new forward pass: no cached steps, no gradients."""
        self._stack = []
        for n in self.grads:
            self.grads[n] = None

    @property
    def steps_cached(self) -> int:
        return len(self._stack)

    def _push(self, cache) -> None:
        self._stack.append(cache)

    def _pop(self):
        if not self._stack:
            raise RuntimeError(f"{self.name}: backward() called more times than forward() since reset()")
        return self._stack.pop()

    def _accumulate(self, name: str, g: np.ndarray) -> None:
        if self.wants_grad(name):
            self.grads[name] = g if self.grads[name] is None else self.grads[name] + g


class LSTMCell(StepLayer):
    """LSTMCell(input_size, hidden_size, dtype=np.float32, rng=None), torch.nn.LSTMCell with bias."""

    def __init__(self, input_size, hidden_size, dtype=np.float32, rng=None):
        super().__init__(dtype)
        self.input_size = positive_int(input_size, "LSTMCell input_size")
        self.hidden_size = H = positive_int(hidden_size, "LSTMCell hidden_size")
        rng = np.random.default_rng(0) if rng is None else rng
        bound = 1.0 / math.sqrt(H)
        self.add_param("weight_ih", uniform_init(rng, bound, (4 * H, self.input_size)))
        self.add_param("weight_hh", uniform_init(rng, bound, (4 * H, H)))
        self.add_param("bias_ih", uniform_init(rng, bound, (4 * H,)))
        self.add_param("bias_hh", uniform_init(rng, bound, (4 * H,)))
        self.state = None          # (h, c) of the last forward() step, None = zeros
        self._carry = None         # (dh, dc) carried to the previous step by backward()

    def reset(self) -> None:
        super().reset()
        self.state = None
        self._carry = None

    def output_shape(self, input_shape):
        shape = tuple(int(s) for s in input_shape)
        if len(shape) != 2 or shape[1] != self.input_size:
            raise ShapeError(f"{self.name}: expected input (N, {self.input_size}), got {shape}")
        return (shape[0], self.hidden_size)

    # -- explicit state ---------------------------------------------------------------
    def step(self, x, state=None):
        """One time step: (h', c') from x (N, in) and state (h, c) (None: zeros)."""
        x = as_input(self, x)
        N, H = self.output_shape(x.shape)
        if state is None:
            h = np.zeros((N, H), self.dtype)
            c = np.zeros((N, H), self.dtype)
        else:
            h, c = (as_grad(self, s, (N, H)) for s in state)
        p = self.params
        a = x @ p["weight_ih"].T + p["bias_ih"] + h @ p["weight_hh"].T + p["bias_hh"]
        i, f, o = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), sigmoid(a[:, 3 * H:])
        g = np.tanh(a[:, 2 * H:3 * H])
        c_new = f * c + i * g
        tc = np.tanh(c_new)
        h_new = o * tc
        self._push((x, h, c, i, f, g, o, tc))
        return h_new, c_new

    def backward_step(self, dh, dc=None):
        """Backward of the latest step: (dx, dh_prev, dc_prev); dx is None if not needs_input_grad."""
        x, h, c, i, f, g, o, tc = self._pop()
        N, H = h.shape
        dh = as_grad(self, dh, (N, H))
        dc = dh * o * (1 - tc * tc) + (0 if dc is None else as_grad(self, dc, (N, H)))
        da = np.concatenate([dc * g * i * (1 - i),          # a_i
                             dc * c * f * (1 - f),          # a_f
                             dc * i * (1 - g * g),          # a_g
                             dh * tc * o * (1 - o)],        # a_o
                            axis=1)
        self._accumulate("weight_ih", da.T @ x)
        self._accumulate("weight_hh", da.T @ h)
        db = da.sum(axis=0)
        self._accumulate("bias_ih", db)
        self._accumulate("bias_hh", db.copy())
        dx = da @ self.params["weight_ih"] if self.needs_input_grad else None
        return dx, da @ self.params["weight_hh"], dc * f

    # -- the x -> y form, for containers and hooks ----------------------------------------
    def forward(self, x):
        """h' for x, stepping from ``self.state`` (zeros after reset)."""
        self.state = self.step(x, self.state)
        return self.state[0]

    def backward(self, dh):
        """dL/dx of the latest step; dL/dh' is ``dh`` plus what the next step carried back."""
        dc = None
        if self._carry is not None:
            dh_next, dc = self._carry
            dh = as_grad(self, dh, dh_next.shape) + dh_next
        dx, dh_prev, dc_prev = self.backward_step(dh, dc)
        self._carry = (dh_prev, dc_prev) if self._stack else None
        return dx

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}"


class GateHead(StepLayer):
    """GateHead(in_features): p = sigmoid(x w^T + b), (N, in) -> (N,)."""

    def __init__(self, in_features, dtype=np.float32, rng=None):
        super().__init__(dtype)
        self.in_features = positive_int(in_features, "GateHead in_features")
        rng = np.random.default_rng(0) if rng is None else rng
        bound = 1.0 / math.sqrt(self.in_features)
        self.add_param("weight", uniform_init(rng, bound, (1, self.in_features)))
        self.add_param("bias", uniform_init(rng, bound, (1,)))

    def output_shape(self, input_shape):
        shape = tuple(int(s) for s in input_shape)
        if len(shape) != 2 or shape[1] != self.in_features:
            raise ShapeError(f"{self.name}: expected input (N, {self.in_features}), got {shape}")
        return (shape[0],)

    def forward(self, x):
        x = as_input(self, x)
        self.output_shape(x.shape)
        p = sigmoid(x @ self.params["weight"][0] + self.params["bias"][0])
        self._push((x, p))
        return p

    def backward(self, dp):
        x, p = self._pop()
        dz = as_grad(self, dp, p.shape) * p * (1 - p)
        self._accumulate("weight", (dz @ x)[None, :])
        self._accumulate("bias", np.array([dz.sum()], dtype=self.dtype))
        return np.outer(dz, self.params["weight"][0]) if self.needs_input_grad else None

    def extra_repr(self):
        return f"in_features={self.in_features}"
