"""Which operations of a forward pass get a gate, and which gate.

:class:`RelevanceMode`, a :class:`~torch.overrides.TorchFunctionMode`, sees
every torch operation the model runs, including those written as plain Python
(``out += identity``, ``x = x + inputs``, ``F.adaptive_avg_pool2d``), and hands
those listed in :data:`HANDLERS` to their handler, which runs the operation and
puts a gate (:mod:`._gates`) on its output. To add an operation type, write a
handler here and list it in :data:`HANDLERS`.
"""

import functools
import inspect
from collections.abc import Callable
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from captum_shallowcam.attr._gates import (
    _AddGate,
    _GatingMulGate,
    _PassThroughGate,
    _Propagation,
    _ProportionalGate,
    _WeightedGate,
    graph_tensor,
)
from captum_shallowcam.attr._rewrites import (
    batch_norm_arguments,
    conv2d_with_padding,
    fold_batch_norm,
    zero_pad_amounts,
)
from captum_shallowcam.attr.rules import RelevanceRule


def _conv_like(func: Callable, args: tuple, kwargs: dict):
    """Splits a conv/linear call into (x, weight, bias, operation(x, w, b))."""
    bound = list(args)
    kwargs = dict(kwargs)
    x = bound[0] if bound else kwargs.pop("input")
    weight = bound[1] if len(bound) > 1 else kwargs.pop("weight")
    if len(bound) > 2:
        bias = bound[2]
        rest = bound[3:]
    else:
        bias = kwargs.pop("bias", None)
        rest = []

    def operation(x_: Tensor, w_: Tensor, b_: Tensor | None) -> Tensor:
        return func(x_, w_, b_, *rest, **kwargs)

    return x, weight, bias, operation


class RelevanceContext(Protocol):
    """What the mode asks the engine while the model runs."""

    @property
    def suspended(self) -> bool:
        """True inside a module applied as a whole (its operations get no gates)."""

    def current_module(self) -> tuple[nn.Module | None, str]:
        """The innermost module running now, and its name."""

    def rule_for_operation(self) -> RelevanceRule:
        """The rule of a conv or linear operation running now."""

    def note_product_of_activations(self, operation: str, operands: list) -> None:
        """An operation multiplies tensors (``operands``); the engine refuses
        the call after the forward pass when two of them depend on an explained
        layer (attention), since no rule covers that product."""


class RelevanceMode(TorchFunctionMode):
    """Puts a gate on every operation of :data:`HANDLERS` that the model runs.

    It owns the tables it fills during the forward pass (to fold BatchNorm and
    zero padding into a conv, to recognise sigmoid gates); :meth:`clear_tables`
    drops them when the forward pass ends, since they would keep activations
    alive that a gradient pass frees. Operations not in :data:`HANDLERS` get no
    gate: they carry relevance by their ordinary backward.
    """

    def __init__(self, context: RelevanceContext, propagation: _Propagation) -> None:
        super().__init__()
        self.context = context
        self.propagation = propagation
        # id of a gated conv/linear output -> (output, gate, graph input), for
        # folding a BatchNorm that follows it.
        self.weighted_outputs: dict[int, tuple[Tensor, _WeightedGate, Tensor]] = {}
        # id of a zero-padded tensor -> (padded, unpadded, pad amounts), to fold
        # the pad into the conv that follows.
        self.padded_outputs: dict[int, tuple[Tensor, Tensor, tuple[int, ...]]] = {}
        # id of a sigmoid's output -> the output: a gate when it multiplies a
        # tensor of its own shape (hand-written swish, GLU).
        self.sigmoid_outputs: dict[int, Tensor] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        handler = HANDLERS.get(func)
        if handler is None or self.context.suspended:
            return func(*args, **kwargs)
        return handler(self, func, args, kwargs)

    def current_module(self) -> tuple[nn.Module | None, str]:
        return self.context.current_module()

    def clear_tables(self) -> None:
        self.weighted_outputs.clear()
        self.padded_outputs.clear()
        self.sigmoid_outputs.clear()

    def forget(self, x: Tensor) -> None:
        """``x`` was changed in place: it no longer holds what the tables say."""
        for table in (self.weighted_outputs, self.padded_outputs, self.sigmoid_outputs):
            table.pop(id(x), None)


def _handle_weighted(mode: RelevanceMode, func, args, kwargs):
    x, weight, bias, operation = _conv_like(func, args, kwargs)
    pad: tuple[int, ...] | None = None
    output = func(*args, **kwargs)
    if not graph_tensor(output):
        return output
    padded = mode.padded_outputs.get(id(x))
    if padded is not None and padded[0] is x:
        # Zero padding just before the conv ("same" padding written as a
        # module): the rule sees the unpadded input, so padded positions get no
        # relevance. Symmetric padding goes into the conv's own argument;
        # other padding is applied by the rule, once per call.
        _, x, amounts = padded
        symmetric = conv2d_with_padding(func, args, kwargs, amounts)
        if symmetric is not None:
            operation = symmetric
        else:
            pad = amounts
    _, name = mode.current_module()
    rule = mode.context.rule_for_operation()
    gate = _WeightedGate(
        mode.propagation, name, (x,), operation, weight, bias, rule, pad
    )
    gated = gate.apply(output, (x,))
    mode.weighted_outputs[id(gated)] = (gated, gate, x)
    return gated


def _handle_batch_norm(mode: RelevanceMode, func, args, kwargs):
    output = func(*args, **kwargs)
    p = batch_norm_arguments(args, kwargs)
    x = p["input"]
    if not graph_tensor(output):
        return output
    _, name = mode.current_module()
    producer = mode.weighted_outputs.get(id(x))
    if producer is None or producer[0] is not x:
        # Standalone BatchNorm: an affine map per channel; pass relevance through.
        return _PassThroughGate(mode.propagation, name, (x,)).apply(output, (x,))
    conv_gate: _WeightedGate = producer[1]
    graph_input: Tensor = producer[2]
    weight, bias = fold_batch_norm(conv_gate.weight, conv_gate.bias, p)
    folded = _WeightedGate(
        mode.propagation,
        f"{conv_gate.name} + {name}",
        conv_gate.inputs,
        conv_gate.operation,
        weight,
        bias,
        conv_gate.rule,
        conv_gate.pad,
    )
    folded._versions = conv_gate._versions
    return folded.apply(output, (graph_input,))


def _handle_pad(mode: RelevanceMode, func, args, kwargs):
    output = func(*args, **kwargs)
    zero_pad = zero_pad_amounts(args, kwargs)
    if graph_tensor(output) and zero_pad is not None:
        x, amounts = zero_pad
        mode.padded_outputs[id(output)] = (output, x, amounts)
    return output


@functools.cache
def _inplace_parameter(func: Callable) -> inspect.Signature | None:
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return None
    return signature if "inplace" in signature.parameters else None


def _handle_pass_through(mode: RelevanceMode, func, args, kwargs):
    x = args[0] if args else kwargs["input"]
    in_place = func in _OUT_OF_PLACE
    signature = _inplace_parameter(func)
    if signature is not None:
        # Run in-place activations out of place: an in-place update would put
        # the activation's own backward (a mask) into the relevance path.
        bound = signature.bind(*args, **kwargs)
        in_place = bool(bound.arguments.get("inplace", False))
        bound.arguments["inplace"] = False
        args, kwargs = bound.args, bound.kwargs
    output = _OUT_OF_PLACE.get(func, func)(*args, **kwargs)
    if not (graph_tensor(output) and graph_tensor(x)):
        if in_place and output is not x:
            return _write_in_place(mode, x, output)
        return output
    _, name = mode.current_module()
    gated = _PassThroughGate(mode.propagation, name, (x,)).apply(output, (x,))
    if in_place:
        gated = _write_in_place(mode, x, gated)
    if func in _SIGMOIDS:
        mode.sigmoid_outputs[id(gated)] = gated
    return gated


#: Modules whose forward returns the result of their one in-place operation:
#: their callers use the result, so it need not be written into the input.
_RETURN_THEIR_RESULT = (
    torch.nn.ReLU, torch.nn.ReLU6, torch.nn.Hardtanh, torch.nn.LeakyReLU,
    torch.nn.ELU, torch.nn.SiLU, torch.nn.Hardswish, torch.nn.Hardsigmoid,
    torch.nn.modules.dropout._DropoutNd,
)  # fmt: skip


def _write_in_place(mode: RelevanceMode, x: Tensor, result: Tensor) -> Tensor:
    """Makes an operation that the model runs in place (``h.relu_()``,
    ``F.relu(h, inplace=True)``, ``h.add_(b)``) act on ``x`` as written,
    although the engine computed ``result`` out of place: a model may ignore
    the returned tensor and go on with ``x``.

    ``x.copy_(result)`` routes ``x``'s gradient and relevance to ``result``
    (and zeros to ``x``'s former history, which autograd adds to what
    arrives there anyway). Inside a module that returns the result (an
    ``nn.ReLU(inplace=True)``) the caller uses the result, so the copy is
    skipped."""
    module, _ = mode.current_module()
    if isinstance(module, _RETURN_THEIR_RESULT):
        return result
    x.copy_(result)
    mode.forget(x)
    return x


def _handle_proportional(mode: RelevanceMode, func, args, kwargs):
    x = args[0] if args else kwargs["input"]
    output = func(*args, **kwargs)
    if not (graph_tensor(output) and graph_tensor(x)) or not x.is_floating_point():
        return output
    rest, kw = args[1:], kwargs

    def operation(x_: Tensor) -> Tensor:
        return func(x_, *rest, **kw)

    _, name = mode.current_module()
    gate = _ProportionalGate(mode.propagation, name, (x,), operation)
    return gate.apply(output, (x,))


def _handle_add(mode: RelevanceMode, func, args, kwargs):
    plain = _OUT_OF_PLACE.get(func, func)
    if (
        len(args) != 2
        or kwargs
        or not (graph_tensor(args[0]) and graph_tensor(args[1]))
    ):
        return func(*args, **kwargs)
    a, b = args
    output = plain(a, b)
    _, name = mode.current_module()
    # ``a += b`` is assigned back by Python; ``a.add_(b)`` may be a statement,
    # so ``a`` itself must change, and the gate keeps a copy of its value.
    in_place = func is Tensor.add_
    values = (a.detach().clone(), b) if in_place else (a, b)
    gated = _AddGate(mode.propagation, f"{name} (add)", values).apply(output, (a, b))
    return _write_in_place(mode, a, gated) if in_place else gated


def _handle_mul(mode: RelevanceMode, func, args, kwargs):
    if len(args) != 2 or kwargs:
        return func(*args, **kwargs)
    a, b = args
    if graph_tensor(a) != graph_tensor(b):
        return _handle_constant_scaling(mode, func, args, kwargs)
    if not graph_tensor(a):
        return func(a, b)
    output = func(a, b)
    if a.shape == b.shape:
        # Same shape: a gate only if exactly one side is a sigmoid's output
        # (x * sigmoid(x), a GLU); any other product is left to the
        # conservation check.
        is_sigmoid = [mode.sigmoid_outputs.get(id(t)) is t for t in (a, b)]
        if is_sigmoid.count(True) != 1:
            return output
        signal = is_sigmoid.index(False)
    else:
        signal = (
            0 if a.shape == output.shape else 1 if b.shape == output.shape else None
        )
        if signal is None:
            return output
    _, name = mode.current_module()
    gate = _GatingMulGate(mode.propagation, f"{name} (gating)", (a, b), signal)
    return gate.apply(output, (a, b))


def _handle_constant_scaling(mode: RelevanceMode, func, args, kwargs):
    """``x * c`` or ``x / c`` with a constant ``c``: relevance passes unchanged."""
    output = func(*args, **kwargs)
    if len(args) != 2 or kwargs or not graph_tensor(output):
        return output
    x = args[0] if graph_tensor(args[0]) else args[1]
    if func in _DIVISIONS and x is not args[0]:
        return output  # c / x is not a scaling of x
    _, name = mode.current_module()
    return _PassThroughGate(mode.propagation, f"{name} (scaling)", (x,)).apply(
        output, (x,)
    )


def _handle_product(mode: RelevanceMode, func, args, kwargs):
    """Matrix products and attention: relevance has no rule through a product
    of two activations (attention scores times values, queries times keys)."""
    operands = [a for a in args if isinstance(a, Tensor)]
    for value in list(args) + list(kwargs.values()):
        if isinstance(value, (list, tuple)):  # torch.einsum(equation, [a, b])
            operands += [a for a in value if isinstance(a, Tensor)]
    mode.context.note_product_of_activations(
        getattr(func, "__name__", str(func)), operands
    )
    return func(*args, **kwargs)


_OUT_OF_PLACE: dict[Callable, Callable] = {
    torch.relu_: torch.relu,
    Tensor.relu_: torch.relu,
    F.relu_: torch.relu,
    Tensor.add_: torch.add,
    Tensor.__iadd__: torch.add,
}

#: The operations that get a gate, and the handler that puts it. Every other
#: operation (views, concatenation, indexing, max pooling's winner-take-all)
#: carries relevance by its ordinary backward.
HANDLERS: dict[Callable, Callable] = {}
for _f in (torch.conv1d, torch.conv2d, torch.conv3d, F.linear):
    HANDLERS[_f] = _handle_weighted
HANDLERS[F.batch_norm] = _handle_batch_norm
HANDLERS[F.pad] = _handle_pad
for _f in (
    F.relu, F.relu_, torch.relu, torch.relu_, Tensor.relu, Tensor.relu_,
    F.relu6, F.hardtanh, F.leaky_relu, F.elu, F.gelu, F.silu, F.hardswish,
    F.hardsigmoid, F.sigmoid, torch.sigmoid, Tensor.sigmoid, F.tanh, torch.tanh,
    Tensor.tanh, F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout,
    F.layer_norm, F.group_norm,
):  # fmt: skip
    HANDLERS[_f] = _handle_pass_through
for _f in (
    F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d, F.adaptive_avg_pool3d, torch.mean, Tensor.mean,
    torch.sum, Tensor.sum,
):  # fmt: skip
    HANDLERS[_f] = _handle_proportional
for _f in (
    torch.add,
    Tensor.add,
    Tensor.__add__,
    Tensor.__radd__,
    Tensor.add_,
    Tensor.__iadd__,
):
    HANDLERS[_f] = _handle_add
for _f in (torch.mul, Tensor.mul, Tensor.__mul__, Tensor.__rmul__):
    HANDLERS[_f] = _handle_mul
_DIVISIONS = (torch.div, Tensor.div, Tensor.__truediv__)
_SIGMOIDS = (F.sigmoid, torch.sigmoid, Tensor.sigmoid, F.hardsigmoid)
for _f in _DIVISIONS:
    HANDLERS[_f] = _handle_constant_scaling
for _f in (
    torch.matmul, Tensor.matmul, Tensor.__matmul__, Tensor.__rmatmul__, torch.bmm,
    Tensor.bmm, torch.baddbmm, Tensor.baddbmm, torch.einsum,
    F.scaled_dot_product_attention, F.multi_head_attention_forward,
):  # fmt: skip
    HANDLERS[_f] = _handle_product
