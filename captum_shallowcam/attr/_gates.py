"""Gates: the rule-aware stand-ins for the operations of a forward pass.

A gate is a custom autograd function whose output has the value of an
operation's output and whose backward, depending on the pass, either hands the
gradient to the operation's own autograd graph (the model's true gradient) or
redistributes relevance onto the operation's inputs with an LRP rule (the
arithmetic is the rule's, in :mod:`.rules`). Which operations get a gate is
decided in :mod:`._operations`.
"""

import math
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from captum_shallowcam.attr.rules import (
    RelevanceRule,
    WeightedOperation,
    pass_through,
    z_rule_relevance,
)

GRADIENT = "gradient"
RELEVANCE = "relevance"


# --------------------------------------------------------------------------- gates
class _GateFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gate: "_Gate", output: Tensor, *inputs: Tensor) -> Tensor:  # type: ignore[override]
        ctx.gate = gate
        ctx.n_inputs = len(inputs)
        # A gate cut out of the relevance path (a conv whose BatchNorm was
        # folded into a gate of its own) gets no gradient; it must see None,
        # not zeros, or it would run its rule on a tensor of zeros.
        ctx.set_materialize_grads(False)
        # An alias (not a copy): the value is the operation's output.
        return output.detach()

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        gate: _Gate = ctx.gate
        if grad is None:
            return (None,) * (2 + ctx.n_inputs)
        if gate.propagation.mode == GRADIENT:
            return (None, grad) + (None,) * ctx.n_inputs
        return (None, None) + tuple(gate.backward_relevance(grad))


class _Gate:
    """Base of the rule-aware gates: holds the operation's inputs by value."""

    def __init__(
        self, propagation: "_Propagation", name: str, inputs: Sequence[Tensor]
    ):
        self.propagation = propagation
        self.name = name
        self.inputs = tuple(x.detach() for x in inputs)
        self._versions = tuple(x._version for x in inputs)
        propagation.gates.append(weakref.ref(self))

    def apply(self, output: Tensor, graph_inputs: Sequence[Tensor]) -> Tensor:
        return _GateFunction.apply(self, output, *graph_inputs)

    def backward_relevance(self, relevance: Tensor) -> tuple[Tensor, ...]:
        if tuple(x._version for x in self.inputs) != self._versions:
            raise RuntimeError(
                f"The input of {self.name} was modified in place after it was used; "
                "relevance cannot be propagated through it. Replace the in-place "
                "operation in the model by its out-of-place form."
            )
        relevances = self.relevance(relevance)
        if self.propagation.recording:
            self.propagation.record(self.name, relevance, relevances)
        return relevances

    def relevance(self, relevance: Tensor) -> tuple[Tensor, ...]:
        raise NotImplementedError


class _PassThroughGate(_Gate):
    """Element-wise activations, dropout, scaling by a constant: relevance passes
    unchanged (the z-rule of an element-wise map).

    Only the input's shape is kept: the rule reads no values, so the input may
    be changed in place afterwards (``h.relu_()`` writes the gate's output into
    its own input)."""

    def __init__(
        self, propagation: "_Propagation", name: str, inputs: Sequence[Tensor]
    ):
        super().__init__(propagation, name, ())
        self.shape = inputs[0].shape

    def relevance(self, relevance: Tensor) -> tuple[Tensor, ...]:
        return (pass_through(relevance, self.shape),)


class _ProportionalGate(_Gate):
    """A linear operation without weights (average pooling, mean, sum): the z-rule
    (:func:`~.rules.z_rule_relevance`)."""

    def __init__(
        self, propagation, name, inputs, operation: Callable[[Tensor], Tensor]
    ):
        super().__init__(propagation, name, inputs)
        self.operation = operation

    def relevance(self, relevance: Tensor) -> tuple[Tensor, ...]:
        return (z_rule_relevance(self.operation, self.inputs[0], relevance),)


class _ModuleGate(_Gate):
    """A module applied as a whole (an unknown leaf module, a normalisation)
    with the rule the user gave it."""

    def __init__(
        self,
        propagation,
        name,
        inputs,
        forward: Callable[[Tensor], Tensor],
        rule: RelevanceRule,
    ):
        super().__init__(propagation, name, inputs)
        self.forward = forward
        self.rule = rule

    def relevance(self, relevance: Tensor) -> tuple[Tensor, ...]:
        return (self.rule.module_relevance(self.forward, self.inputs[0], relevance),)


class _WeightedGate(_Gate):
    """A conv or linear operation ``operation(x, weight, bias)`` with an LRP rule."""

    def __init__(
        self,
        propagation,
        name,
        inputs,
        operation: WeightedOperation,
        weight: Tensor,
        bias: Tensor | None,
        rule: RelevanceRule,
        pad: tuple[int, ...] | None = None,
    ):
        super().__init__(propagation, name, inputs)
        self.operation = operation
        self.weight = weight.detach()
        self.bias = None if bias is None else bias.detach()
        self.rule = rule
        # Zero padding (F.pad amounts) applied to the input before the operation.
        self.pad = pad

    def relevance(self, relevance: Tensor) -> tuple[Tensor, ...]:
        x = self.inputs[0]
        if self.rule.element_wise and relevance.numel() != _padded_numel(x, self.pad):
            raise ValueError(
                f"{type(getattr(self.rule, 'rule', self.rule)).__name__} was given "
                f"for module '{self.name}', whose output {tuple(relevance.shape)} has "
                f"another number of elements than its input {tuple(x.shape)}: "
                "relevance cannot pass through unchanged. Give it EpsilonRule() "
                "(or leave it to the default rule)."
            )
        result = self.rule.relevance(
            self.operation,
            self.inputs[0],
            self.weight,
            relevance,
            self.pad,
            bias=self.bias,
        )
        return (result,)


def _padded_numel(x: Tensor, pad: Sequence[int] | None) -> int:
    """The number of elements of ``F.pad(x, pad)``, without padding it."""
    shape = list(x.shape)
    for i in range(len(pad or ()) // 2):
        shape[-1 - i] += pad[2 * i] + pad[2 * i + 1]
    return math.prod(shape)


class _AddGate(_Gate):
    """``a + b`` of two tensors in the graph (residual connections).

    Relevance is split in proportion to each branch's contribution,
    :math:`R_a = |a| / (|a| + |b|) \\cdot R`, which conserves relevance exactly and
    cannot explode when the branches cancel."""

    def relevance(self, relevance: Tensor) -> tuple[Tensor, ...]:
        a, b = self.inputs
        abs_a, abs_b = a.abs(), b.abs()
        total = abs_a + abs_b
        share_a = torch.where(total > 0, abs_a / total.clamp_min(1e-30), 0.5)
        relevance_a = relevance * share_a
        relevance_b = relevance - relevance_a
        return (relevance_a.sum_to_size(a.shape), relevance_b.sum_to_size(b.shape))


class _GatingMulGate(_Gate):
    """``signal * gate`` with a broadcast gate (squeeze-excitation, attention
    masks) or a sigmoid's output of the signal's shape (``x * sigmoid(x)``, a
    GLU): all relevance goes to the signal, as in LRP for gated units."""

    def __init__(self, propagation, name, inputs, signal_index: int):
        super().__init__(propagation, name, inputs)
        self.signal_index = signal_index

    def relevance(self, relevance: Tensor) -> tuple[Tensor, ...]:
        out = [torch.zeros_like(x) for x in self.inputs]
        out[self.signal_index] = relevance.sum_to_size(
            self.inputs[self.signal_index].shape
        )
        return tuple(out)


# --------------------------------------------------------------- the propagation
class _Propagation:
    """State shared by the gates of one explanation call."""

    def __init__(self) -> None:
        self.mode = GRADIENT
        # Per-operation conservation is only measured when asked (it costs two
        # reductions per operation), i.e. to explain a failed total check.
        self.recording = False
        self.worst_local_violation = 0.0
        self.worst_module: str | None = None
        # Weak: the autograd graph owns the gates.
        self.gates: list[weakref.ref[_Gate]] = []

    def release(self) -> None:
        """Drops the gates' references to the activations once no relevance pass
        is left. The graph keeps the gates alive until the call ends, so without
        this a gradient pass that frees the activations as it goes would free
        nothing, and on CPU fresh memory costs more than the arithmetic on it."""
        for ref in self.gates:
            gate = ref()
            if gate is not None:
                gate.inputs = ()
        self.gates.clear()

    def record(
        self, name: str, relevance_out: Tensor, relevance_in: Sequence[Tensor]
    ) -> None:
        total_out = relevance_out.detach().flatten(1).sum(1)
        total_in = sum(r.detach().flatten(1).sum(1) for r in relevance_in)
        scale = relevance_out.detach().flatten(1).abs().sum(1) + 1e-12
        violation = float(((total_in - total_out).abs() / scale).max())
        if violation > self.worst_local_violation:
            self.worst_local_violation = violation
            self.worst_module = name


def is_gate_output(tensor: Tensor) -> bool:
    """Whether ``tensor`` is the output of a gate (its autograd node is a gate's)."""
    return type(tensor.grad_fn) is _GateFunction._backward_cls


def graph_tensor(x: Any) -> bool:
    """Whether ``x`` is a tensor of the autograd graph."""
    return isinstance(x, Tensor) and x.requires_grad
