"""Gates: the rule-aware stand-ins for the operations of a forward pass.

A gate is a custom autograd function whose output has the value of an
operation's output and whose backward, depending on the pass, either hands the
gradient to the operation's own autograd graph (the model's true gradient) or
redistributes relevance onto the operation's inputs with an LRP rule. The
:class:`_RelevanceMode` puts a gate on every operation that needs a rule, and
folds BatchNorm and zero padding into the adjacent conv.
"""

import functools
import inspect
import weakref
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    List,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode

from captum_shallowcam._captum_compat import IdentityRule, PropagationRule
from captum_shallowcam.attr.rules import (
    WeightedOperation,
    ZPlusRule,
    _crop,
    per_example_extremes,
)

if TYPE_CHECKING:  # pragma: no cover
    from captum_shallowcam.attr._engine import _Engine

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
    def backward(ctx, grad: Tensor) -> Tuple[Optional[Tensor], ...]:  # type: ignore[override]
        gate: _Gate = ctx.gate
        if grad is None:
            return (None,) * (2 + ctx.n_inputs)
        if gate.propagation.mode == GRADIENT:
            return (None, grad) + (None,) * ctx.n_inputs
        return (None, None) + tuple(gate.backward_relevance(grad))


class _Gate:
    """Base of the rule-aware gates: holds the operation's inputs by value."""

    def __init__(self, propagation: "_Propagation", name: str, inputs: Sequence[Tensor]):
        self.propagation = propagation
        self.name = name
        self.inputs = tuple(x.detach() for x in inputs)
        self._versions = tuple(x._version for x in inputs)
        propagation.gates.append(weakref.ref(self))

    def apply(self, output: Tensor, graph_inputs: Sequence[Tensor]) -> Tensor:
        return _GateFunction.apply(self, output, *graph_inputs)

    def backward_relevance(self, relevance: Tensor) -> Tuple[Tensor, ...]:
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

    def relevance(self, relevance: Tensor) -> Tuple[Tensor, ...]:
        raise NotImplementedError


class _PassThroughGate(_Gate):
    """Element-wise activations, dropout, scaling by a constant: relevance passes
    unchanged (the z-rule of an element-wise map).

    Only the input's shape is kept: the rule reads no values, so the input may
    be changed in place afterwards (``h.relu_()`` writes the gate's output into
    its own input)."""

    def __init__(self, propagation: "_Propagation", name: str, inputs: Sequence[Tensor]):
        super().__init__(propagation, name, ())
        self.shape = inputs[0].shape

    def relevance(self, relevance: Tensor) -> Tuple[Tensor, ...]:
        shape = self.shape
        if relevance.shape == shape:
            return (relevance,)
        if relevance.numel() == shape.numel():  # a reshaping module
            return (relevance.reshape(shape),)
        return (relevance.sum_to_size(shape),)  # broadcast by a constant factor


def _stabilize(z: Tensor, epsilon: Union[float, Tensor]) -> Tensor:
    """``z`` pushed away from 0 by ``epsilon`` (the LRP epsilon stabiliser)."""
    return z + epsilon * torch.where(z >= 0, 1.0, -1.0).to(z.dtype)


def _relative_epsilon(z: Tensor, epsilon: float = 1e-6) -> Tensor:
    """``epsilon`` times the largest ``|z|`` of each example, so that a rule
    behaves the same whatever the activations' scale."""
    lowest, highest = per_example_extremes(z.detach())
    return epsilon * torch.maximum(highest, -lowest).clamp_min(torch.finfo(z.dtype).tiny)


class _ProportionalGate(_Gate):
    """A linear operation without weights (average pooling, mean, sum): the z-rule
    :math:`R_i = a_i \\partial z / \\partial a_i \\cdot R / z`."""

    def __init__(
        self,
        propagation,
        name,
        inputs,
        operation: Callable[[Tensor], Tensor],
        epsilon: Optional[float] = None,
    ):
        super().__init__(propagation, name, inputs)
        self.operation = operation
        # The epsilon rule's stabiliser when the user gave one (a whole module
        # with ``EpsilonRule``); else one relative to the scale of ``z``.
        self.epsilon = epsilon

    def relevance(self, relevance: Tensor) -> Tuple[Tensor, ...]:
        with torch.enable_grad():
            x = self.inputs[0].detach().requires_grad_(True)
            z = self.operation(x)
            # The ratio must not be part of the graph: the backward of a sum
            # returns a view of it, which would attach the relevance.
            value = z.detach()
            dead = value == 0
            epsilon = _relative_epsilon(value) if self.epsilon is None else self.epsilon
            ratio = torch.where(dead, 0.0, relevance / _stabilize(value, epsilon))
            (grad,) = torch.autograd.grad(z, x, ratio)
            relevance_in = x.detach() * grad
            if self.epsilon is None and bool((dead & (relevance != 0)).any()):
                # All inputs zero: spread the relevance evenly over them.
                ones = torch.ones_like(x).requires_grad_(True)
                z_ones = self.operation(ones)
                flat = torch.where(dead, relevance / z_ones.detach().clamp_min(1e-30), 0.0)
                relevance_in = relevance_in + torch.autograd.grad(z_ones, ones, flat)[0]
        return (relevance_in,)


class _WeightedGate(_Gate):
    """A conv or linear operation ``operation(x, weight, bias)`` with an LRP rule."""

    def __init__(
        self,
        propagation,
        name,
        inputs,
        operation: WeightedOperation,
        weight: Tensor,
        bias: Optional[Tensor],
        rule: PropagationRule,
        pad: Optional[Tuple[int, ...]] = None,
    ):
        super().__init__(propagation, name, inputs)
        self.operation = operation
        self.weight = weight.detach()
        self.bias = None if bias is None else bias.detach()
        self.rule = rule
        # Zero padding (F.pad amounts) applied to the input before the operation.
        self.pad = pad

    def relevance(self, relevance: Tensor) -> Tuple[Tensor, ...]:
        x = self.inputs[0]
        rule = self.rule
        if isinstance(rule, ZPlusRule):
            return (rule.relevance(self.operation, x, self.weight, relevance, pad=self.pad),)
        if self.pad is not None:
            x = F.pad(x, self.pad)
        if isinstance(rule, IdentityRule):
            result = relevance.reshape(x.shape)
        else:
            # Any other Captum rule: let it manipulate a copy of the weights.
            params = _WeightCopy(self.weight, self.bias)
            rule._manipulate_weights(params, (x,), None)
            with torch.enable_grad():
                xg = x.clone().requires_grad_(True)
                z = self.operation(xg, params.weight, params.bias)
                ratio = relevance / _stabilize(z, rule.STABILITY_FACTOR)
                (grad,) = torch.autograd.grad(z, xg, ratio)
            result = x * grad
        return (result if self.pad is None else _crop(result, self.pad),)


class _WeightCopy:
    """Stands in for a module when a Captum rule manipulates weights."""

    def __init__(self, weight: Tensor, bias: Optional[Tensor]):
        self.weight = weight.clone()
        if bias is not None:
            self.bias = bias.clone()
        else:
            self.bias = None


class _AddGate(_Gate):
    """``a + b`` of two tensors in the graph (residual connections).

    Relevance is split in proportion to each branch's contribution,
    :math:`R_a = |a| / (|a| + |b|) \\cdot R`, which conserves relevance exactly and
    cannot explode when the branches cancel."""

    def relevance(self, relevance: Tensor) -> Tuple[Tensor, ...]:
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

    def relevance(self, relevance: Tensor) -> Tuple[Tensor, ...]:
        out = [torch.zeros_like(x) for x in self.inputs]
        out[self.signal_index] = relevance.sum_to_size(self.inputs[self.signal_index].shape)
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
        self.worst_module: Optional[str] = None
        # Weak: the autograd graph owns the gates.
        self.gates: List[weakref.ref[_Gate]] = []

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

    def record(self, name: str, relevance_out: Tensor, relevance_in: Sequence[Tensor]) -> None:
        total_out = relevance_out.detach().flatten(1).sum(1)
        total_in = sum(r.detach().flatten(1).sum(1) for r in relevance_in)
        scale = relevance_out.detach().flatten(1).abs().sum(1) + 1e-12
        violation = float(((total_in - total_out).abs() / scale).max())
        if violation > self.worst_local_violation:
            self.worst_local_violation = violation
            self.worst_module = name


_BATCH_NORM_SIGNATURE = inspect.signature(F.batch_norm)
_PAD_SIGNATURE = inspect.signature(F.pad)


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

    def operation(x_: Tensor, w_: Tensor, b_: Optional[Tensor]) -> Tensor:
        return func(x_, w_, b_, *rest, **kwargs)

    return x, weight, bias, operation


class _RelevanceMode(TorchFunctionMode):
    """Puts a gate on every operation that needs an LRP rule."""

    def __init__(self, engine: "_Engine") -> None:
        super().__init__()
        self.engine = engine

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        handler = _HANDLERS.get(func)
        if handler is None or self.engine.suspended:
            return func(*args, **kwargs)
        return handler(self.engine, func, args, kwargs)


def _graph_tensor(x: Any) -> bool:
    return isinstance(x, Tensor) and x.requires_grad


def _handle_weighted(engine: "_Engine", func, args, kwargs):
    x, weight, bias, operation = _conv_like(func, args, kwargs)
    pad: Optional[Tuple[int, ...]] = None
    output = func(*args, **kwargs)
    if not _graph_tensor(output):
        return output
    padded = engine.padded_outputs.get(id(x))
    if padded is not None and padded[0] is x:
        # Zero padding just before the conv ("same" padding written as a
        # module): the rule sees the unpadded input, so padded positions get no
        # relevance. Symmetric padding goes into the conv's own argument;
        # other padding is applied by the rule, once per call.
        _, x, amounts = padded
        symmetric = _conv2d_padded(func, args, kwargs, amounts)
        if symmetric is not None:
            operation = symmetric
        else:
            pad = amounts
    _, name = engine.current_module()
    rule = engine.rule_for_operation()
    gate = _WeightedGate(engine.propagation, name, (x,), operation, weight, bias, rule, pad)
    gated = gate.apply(output, (x,))
    engine.weighted_outputs[id(gated)] = (gated, gate, x)
    return gated


def _handle_batch_norm(engine: "_Engine", func, args, kwargs):
    output = func(*args, **kwargs)
    bound = _BATCH_NORM_SIGNATURE.bind(*args, **kwargs)
    bound.apply_defaults()
    p = bound.arguments
    x = p["input"]
    if not _graph_tensor(output):
        return output
    _, name = engine.current_module()
    producer = engine.weighted_outputs.get(id(x))
    if producer is None or producer[0] is not x:
        # Standalone BatchNorm: an affine map per channel; pass relevance through.
        return _PassThroughGate(engine.propagation, name, (x,)).apply(output, (x,))
    conv_gate: _WeightedGate = producer[1]
    graph_input: Tensor = producer[2]
    # Fold: y = scale * (conv(x, W) + b - mean) + shift.
    if p["training"] or p["running_mean"] is None:
        dims = [0] + list(range(2, x.dim()))
        mean = x.detach().mean(dims)
        var = x.detach().var(dims, unbiased=False)
    else:
        mean, var = p["running_mean"].detach(), p["running_var"].detach()
    scale = torch.rsqrt(var + p["eps"])
    if p["weight"] is not None:
        scale = scale * p["weight"].detach()
    shift = -mean * scale
    if p["bias"] is not None:
        shift = shift + p["bias"].detach()
    weight = conv_gate.weight * scale.reshape((-1,) + (1,) * (conv_gate.weight.dim() - 1))
    bias = shift if conv_gate.bias is None else conv_gate.bias * scale + shift
    folded = _WeightedGate(
        engine.propagation,
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


_CONV2D_PARAMETERS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")


def _conv2d_padded(func, args, kwargs, amounts) -> Optional[Callable]:
    """The conv with a symmetric zero padding moved into its own ``padding``
    argument (no padded copy of the input in the relevance pass), or None."""
    if func is not torch.conv2d or len(amounts) != 4:
        return None
    left, right, top, bottom = amounts
    params = dict(zip(_CONV2D_PARAMETERS, args), **kwargs)
    if left != right or top != bottom or params.get("padding", 0) not in (0, (0, 0), [0, 0]):
        return None
    stride, dilation = params.get("stride", 1), params.get("dilation", 1)
    groups = params.get("groups", 1)

    def operation(x_: Tensor, w_: Tensor, b_: Optional[Tensor]) -> Tensor:
        return torch.conv2d(x_, w_, b_, stride, (top, left), dilation, groups)

    return operation


def _handle_pad(engine: "_Engine", func, args, kwargs):
    output = func(*args, **kwargs)
    bound = _PAD_SIGNATURE.bind(*args, **kwargs)
    bound.apply_defaults()
    p = bound.arguments
    x = p["input"]
    if _graph_tensor(output) and p["mode"] == "constant" and not p["value"]:
        engine.padded_outputs[id(output)] = (output, x, tuple(p["pad"]))
    return output


@functools.cache
def _inplace_parameter(func: Callable) -> Optional[inspect.Signature]:
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return None
    return signature if "inplace" in signature.parameters else None


def _handle_pass_through(engine: "_Engine", func, args, kwargs):
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
    if not (_graph_tensor(output) and _graph_tensor(x)):
        if in_place and output is not x:
            return _write_in_place(engine, x, output)
        return output
    _, name = engine.current_module()
    gated = _PassThroughGate(engine.propagation, name, (x,)).apply(output, (x,))
    if in_place:
        gated = _write_in_place(engine, x, gated)
    if func in _SIGMOIDS:
        engine.sigmoid_outputs[id(gated)] = gated
    return gated


#: Modules whose forward returns the result of their one in-place operation:
#: their callers use the result, so it need not be written into the input.
_RETURN_THEIR_RESULT = (
    torch.nn.ReLU, torch.nn.ReLU6, torch.nn.Hardtanh, torch.nn.LeakyReLU,
    torch.nn.ELU, torch.nn.SiLU, torch.nn.Hardswish, torch.nn.Hardsigmoid,
    torch.nn.modules.dropout._DropoutNd,
)  # fmt: skip


def _write_in_place(engine: "_Engine", x: Tensor, result: Tensor) -> Tensor:
    """Makes an operation that the model runs in place (``h.relu_()``,
    ``F.relu(h, inplace=True)``, ``h.add_(b)``) act on ``x`` as written,
    although the engine computed ``result`` out of place: a model may ignore
    the returned tensor and go on with ``x``.

    ``x.copy_(result)`` routes ``x``'s gradient and relevance to ``result``
    (and zeros to ``x``'s former history, which autograd adds to what
    arrives there anyway). Inside a module that returns the result (an
    ``nn.ReLU(inplace=True)``) the caller uses the result, so the copy is
    skipped."""
    module, _ = engine.current_module()
    if isinstance(module, _RETURN_THEIR_RESULT):
        return result
    x.copy_(result)
    # x no longer holds the value these tables recorded for it.
    for table in (engine.weighted_outputs, engine.padded_outputs, engine.sigmoid_outputs):
        table.pop(id(x), None)
    return x


def _handle_proportional(engine: "_Engine", func, args, kwargs):
    x = args[0] if args else kwargs["input"]
    output = func(*args, **kwargs)
    if not (_graph_tensor(output) and _graph_tensor(x)) or not x.is_floating_point():
        return output
    rest, kw = args[1:], kwargs

    def operation(x_: Tensor) -> Tensor:
        return func(x_, *rest, **kw)

    _, name = engine.current_module()
    gate = _ProportionalGate(engine.propagation, name, (x,), operation)
    return gate.apply(output, (x,))


def _handle_add(engine: "_Engine", func, args, kwargs):
    plain = _OUT_OF_PLACE.get(func, func)
    if (
        len(args) != 2
        or kwargs
        or not (_graph_tensor(args[0]) and _graph_tensor(args[1]))
    ):
        return func(*args, **kwargs)
    a, b = args
    output = plain(a, b)
    _, name = engine.current_module()
    # ``a += b`` is assigned back by Python; ``a.add_(b)`` may be a statement,
    # so ``a`` itself must change, and the gate keeps a copy of its value.
    in_place = func is Tensor.add_
    values = (a.detach().clone(), b) if in_place else (a, b)
    gated = _AddGate(engine.propagation, f"{name} (add)", values).apply(output, (a, b))
    return _write_in_place(engine, a, gated) if in_place else gated


def _handle_mul(engine: "_Engine", func, args, kwargs):
    if len(args) != 2 or kwargs:
        return func(*args, **kwargs)
    a, b = args
    if _graph_tensor(a) != _graph_tensor(b):
        return _handle_constant_scaling(engine, func, args, kwargs)
    if not _graph_tensor(a):
        return func(a, b)
    output = func(a, b)
    if a.shape == b.shape:
        # Same shape: a gate only if exactly one side is a sigmoid's output
        # (x * sigmoid(x), a GLU); any other product is left to the
        # conservation check.
        is_sigmoid = [engine.sigmoid_outputs.get(id(t)) is t for t in (a, b)]
        if is_sigmoid.count(True) != 1:
            return output
        signal = is_sigmoid.index(False)
    else:
        signal = 0 if a.shape == output.shape else 1 if b.shape == output.shape else None
        if signal is None:
            return output
    _, name = engine.current_module()
    gate = _GatingMulGate(engine.propagation, f"{name} (gating)", (a, b), signal)
    return gate.apply(output, (a, b))


def _handle_constant_scaling(engine: "_Engine", func, args, kwargs):
    """``x * c`` or ``x / c`` with a constant ``c``: relevance passes unchanged."""
    output = func(*args, **kwargs)
    if len(args) != 2 or kwargs or not _graph_tensor(output):
        return output
    x = args[0] if _graph_tensor(args[0]) else args[1]
    if func in _DIVISIONS and x is not args[0]:
        return output  # c / x is not a scaling of x
    _, name = engine.current_module()
    return _PassThroughGate(engine.propagation, f"{name} (scaling)", (x,)).apply(output, (x,))


_OUT_OF_PLACE: Dict[Callable, Callable] = {
    torch.relu_: torch.relu,
    Tensor.relu_: torch.relu,
    F.relu_: torch.relu,
    Tensor.add_: torch.add,
    Tensor.__iadd__: torch.add,
}

_HANDLERS: Dict[Callable, Callable] = {}
for _f in (torch.conv1d, torch.conv2d, torch.conv3d, F.linear):
    _HANDLERS[_f] = _handle_weighted
_HANDLERS[F.batch_norm] = _handle_batch_norm
_HANDLERS[F.pad] = _handle_pad
for _f in (
    F.relu, F.relu_, torch.relu, torch.relu_, Tensor.relu, Tensor.relu_,
    F.relu6, F.hardtanh, F.leaky_relu, F.elu, F.gelu, F.silu, F.hardswish,
    F.hardsigmoid, F.sigmoid, torch.sigmoid, Tensor.sigmoid, F.tanh, torch.tanh,
    Tensor.tanh, F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout,
    F.layer_norm, F.group_norm,
):  # fmt: skip
    _HANDLERS[_f] = _handle_pass_through
for _f in (
    F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d, F.adaptive_avg_pool3d, torch.mean, Tensor.mean,
    torch.sum, Tensor.sum,
):  # fmt: skip
    _HANDLERS[_f] = _handle_proportional
for _f in (torch.add, Tensor.add, Tensor.__add__, Tensor.__radd__, Tensor.add_, Tensor.__iadd__):
    _HANDLERS[_f] = _handle_add
for _f in (torch.mul, Tensor.mul, Tensor.__mul__, Tensor.__rmul__):
    _HANDLERS[_f] = _handle_mul
_DIVISIONS = (torch.div, Tensor.div, Tensor.__truediv__)
_SIGMOIDS = (F.sigmoid, torch.sigmoid, Tensor.sigmoid, F.hardsigmoid)
for _f in _DIVISIONS:
    _HANDLERS[_f] = _handle_constant_scaling


