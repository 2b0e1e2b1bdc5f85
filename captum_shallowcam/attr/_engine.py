"""The relevance engine: one forward pass, gradient and relevance backward passes.

How it works. During the forward pass a :class:`torch.overrides.TorchFunctionMode`
sees every torch operation the model runs, including those written as plain
Python (``out += identity``, ``x = x + inputs``, ``F.adaptive_avg_pool2d``). Each
operation that needs an LRP rule gets a *gate*: a custom autograd function whose
output has the operation's value and whose backward does one of two things,
depending on the pass:

* gradient pass: hands the gradient to the operation's own autograd graph,
  so the gradient is the model's true gradient;
* relevance pass: redistributes the incoming relevance onto the operation's
  inputs with the rule, skipping the operation's own backward.

So a single forward graph serves both passes, the model's weights are never
touched (rules see copies), BatchNorm is folded into the preceding conv by the
gate of the BatchNorm operation, and residual additions split relevance between
their branches. Module hooks only track which module an operation runs in
(to choose its rule and name it in messages) and capture the target layers.
Everything is removed when the pass ends, also when it raises.
"""

import functools
import inspect
import threading
import weakref
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from captum_shallowcam._captum_compat import (
    EpsilonRule,
    IdentityRule,
    PropagationRule,
    _run_forward,
)
from captum_shallowcam.attr.rules import (
    SUPPORTED_MODULES,
    RuleMap,
    ZPlusRule,
    resolve_rule,
    rule_for_weighted_op,
)

GRADIENT = "gradient"
RELEVANCE = "relevance"


# --------------------------------------------------------------------------- gates
class _GateFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gate: "_Gate", output: Tensor, *inputs: Tensor) -> Tensor:  # type: ignore[override]
        ctx.gate = gate
        ctx.n_inputs = len(inputs)
        # An alias (not a copy): the value is the operation's output.
        return output.detach()

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tuple[Optional[Tensor], ...]:  # type: ignore[override]
        gate: _Gate = ctx.gate
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
    """Element-wise activations, dropout: relevance passes unchanged."""

    def relevance(self, relevance: Tensor) -> Tuple[Tensor, ...]:
        return (relevance.reshape(self.inputs[0].shape),)


def _stabilize(z: Tensor, epsilon: Union[float, Tensor]) -> Tensor:
    """``z`` pushed away from 0 by ``epsilon`` (the LRP epsilon stabiliser)."""
    return z + epsilon * torch.where(z >= 0, 1.0, -1.0).to(z.dtype)


def _relative_epsilon(z: Tensor, epsilon: float = 1e-6) -> Tensor:
    """``epsilon`` times the largest ``|z|`` of each example, so that a rule
    behaves the same whatever the activations' scale."""
    scale = z.detach().abs().flatten(1).amax(1).clamp_min(torch.finfo(z.dtype).tiny)
    return epsilon * scale.view((-1,) + (1,) * (z.dim() - 1))


class _ProportionalGate(_Gate):
    """A linear operation without weights (average pooling, mean, sum): the z-rule
    :math:`R_i = a_i \\partial z / \\partial a_i \\cdot R / z`."""

    def __init__(self, propagation, name, inputs, operation: Callable[[Tensor], Tensor]):
        super().__init__(propagation, name, inputs)
        self.operation = operation

    def relevance(self, relevance: Tensor) -> Tuple[Tensor, ...]:
        with torch.enable_grad():
            x = self.inputs[0].detach().requires_grad_(True)
            z = self.operation(x)
            (grad,) = torch.autograd.grad(z, x, relevance / _stabilize(z, _relative_epsilon(z)))
        return (self.inputs[0] * grad,)


class _WeightedGate(_Gate):
    """A conv or linear operation ``operation(x, weight, bias)`` with an LRP rule."""

    def __init__(
        self,
        propagation,
        name,
        inputs,
        operation: Callable[[Tensor, Tensor, Optional[Tensor]], Tensor],
        weight: Tensor,
        bias: Optional[Tensor],
        rule: PropagationRule,
    ):
        super().__init__(propagation, name, inputs)
        self.operation = operation
        self.weight = weight.detach()
        self.bias = None if bias is None else bias.detach()
        self.rule = rule

    def relevance(self, relevance: Tensor) -> Tuple[Tensor, ...]:
        x = self.inputs[0]
        rule = self.rule
        if isinstance(rule, IdentityRule):
            return (relevance.reshape(x.shape),)
        if isinstance(rule, ZPlusRule):
            return (rule.relevance(self.operation, x, self.weight, relevance),)
        # Any other Captum rule: let it manipulate a copy of the weights.
        params = _WeightCopy(self.weight, self.bias)
        rule._manipulate_weights(params, (x,), None)
        with torch.enable_grad():
            xg = x.clone().requires_grad_(True)
            z = self.operation(xg, params.weight, params.bias)
            ratio = relevance / _stabilize(z, rule.STABILITY_FACTOR)
            (grad,) = torch.autograd.grad(z, xg, ratio)
        return (x * grad,)


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
    masks): all relevance goes to the signal, as in LRP for gated units."""

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
    output = func(*args, **kwargs)
    if not _graph_tensor(output):
        return output
    padded = engine.padded_outputs.get(id(x))
    if padded is not None and padded[0] is x:
        # Zero padding just before the conv ("same" padding written as a
        # module): fold it into the operation, so no rule sees padded positions.
        _, x, pad = padded
        operation = _compose(operation, pad)
    module, name = engine.current_module()
    rule = rule_for_weighted_op(module, name, engine.rules)
    gate = _WeightedGate(engine.propagation, name, (x,), operation, weight, bias, rule)
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
    )
    folded._versions = conv_gate._versions
    return folded.apply(output, (graph_input,))


def _compose(operation, pad):
    def padded_operation(x_: Tensor, w_: Tensor, b_: Optional[Tensor]) -> Tensor:
        return operation(pad(x_), w_, b_)

    return padded_operation


def _handle_pad(engine: "_Engine", func, args, kwargs):
    output = func(*args, **kwargs)
    bound = _PAD_SIGNATURE.bind(*args, **kwargs)
    bound.apply_defaults()
    p = bound.arguments
    x = p["input"]
    if _graph_tensor(output) and p["mode"] == "constant" and not p["value"]:
        rest = {k: v for k, v in p.items() if k != "input"}
        engine.padded_outputs[id(output)] = (output, x, lambda x_: func(x_, **rest))
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
    signature = _inplace_parameter(func)
    if signature is not None:
        # Run in-place activations out of place: an in-place update would put
        # the activation's own backward (a mask) into the relevance path.
        bound = signature.bind(*args, **kwargs)
        bound.arguments["inplace"] = False
        args, kwargs = bound.args, bound.kwargs
    output = _OUT_OF_PLACE.get(func, func)(*args, **kwargs)
    if not (_graph_tensor(output) and _graph_tensor(x)):
        return output
    _, name = engine.current_module()
    return _PassThroughGate(engine.propagation, name, (x,)).apply(output, (x,))


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
    return _AddGate(engine.propagation, f"{name} (add)", (a, b)).apply(output, (a, b))


def _handle_mul(engine: "_Engine", func, args, kwargs):
    if len(args) != 2 or kwargs or not (_graph_tensor(args[0]) and _graph_tensor(args[1])):
        return func(*args, **kwargs)
    a, b = args
    if a.shape == b.shape:
        return func(a, b)
    output = func(a, b)
    signal = 0 if a.shape == output.shape else 1 if b.shape == output.shape else None
    if signal is None:
        return output
    _, name = engine.current_module()
    gate = _GatingMulGate(engine.propagation, f"{name} (gating)", (a, b), signal)
    return gate.apply(output, (a, b))


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


def _is_unknown_leaf(module: nn.Module) -> bool:
    return not isinstance(module, SUPPORTED_MODULES) and next(module.children(), None) is None


def _check_handled(name: str, module: nn.Module, args: tuple, output: Any) -> None:
    """A leaf module of unknown type is fine when its output comes from an
    operation the engine gates, or is its input (or a reshaped view of it)."""
    if not isinstance(output, Tensor) or not output.requires_grad:
        return
    x = args[0] if args else None
    if isinstance(x, Tensor) and (
        output is x or (output.data_ptr() == x.data_ptr() and output.numel() == x.numel())
    ):
        return
    if output.grad_fn is not None and type(output.grad_fn).__name__ == "_GateFunctionBackward":
        return
    kind = type(module).__name__
    raise TypeError(
        f"Module '{name}' ({kind}) has no LRP rule: its output comes from an "
        "operation the relevance engine cannot propagate through "
        f"({type(output.grad_fn).__name__ if output.grad_fn else 'unknown'}). Give it "
        f"a rule when constructing the method, e.g. rules={{{kind}: IdentityRule()}} "
        f"for an element-wise or shape-only module or rules={{{kind}: EpsilonRule()}} "
        "for a linear one (or set module.rule as in captum.attr.LRP)."
    )


# ------------------------------------------------------------------ the engine
_models_in_use: "weakref.WeakKeyDictionary[nn.Module, int]" = weakref.WeakKeyDictionary()
_models_lock = threading.Lock()


@contextmanager
def _exclusive(model: Optional[nn.Module]) -> Iterator[None]:
    """Refuses to explain one model instance from two threads at once."""
    if model is None:
        yield
        return
    me = threading.get_ident()
    with _models_lock:
        owner = _models_in_use.get(model)
        if owner is not None and owner != me:
            raise RuntimeError(
                "This model is being explained in another thread right now. Explain "
                "one model instance from one thread at a time, or give each thread "
                "its own copy (copy.deepcopy(model))."
            )
        _models_in_use[model] = me
    try:
        yield
    finally:
        with _models_lock:
            if _models_in_use.get(model) == me and owner is None:
                del _models_in_use[model]


class LayerCapture:
    """What one forward pass captured at a target layer."""

    def __init__(self, layer: nn.Module, name: str) -> None:
        self.layer = layer
        self.name = name
        self.tensor: Optional[Tensor] = None
        self.calls = 0
        self.order = -1  # position among the captured layers in forward order

    @property
    def activation(self) -> Tensor:
        assert self.tensor is not None
        return self.tensor.detach()


class _Engine:
    """One explanation call: hooks, the function mode and the backward passes."""

    def __init__(
        self,
        forward_func: Callable,
        layers: Sequence[nn.Module],
        rules: Optional[RuleMap],
        attribute_to_layer_input: bool,
        use_relevance: bool,
    ) -> None:
        self.forward_func = forward_func
        self.model = forward_func if isinstance(forward_func, nn.Module) else None
        self.layers = list(layers)
        self.rules = rules
        self.attribute_to_layer_input = attribute_to_layer_input
        self.use_relevance = use_relevance
        self.propagation = _Propagation()
        self.thread = threading.get_ident()
        self.module_stack: List[Tuple[nn.Module, str]] = []
        self.suspend_depth = 0
        # id of a gated conv/linear output -> (output, gate, graph input), for
        # folding a BatchNorm that follows it.
        self.weighted_outputs: Dict[int, Tuple[Tensor, _WeightedGate, Tensor]] = {}
        self.whole_module_inputs: Dict[int, tuple] = {}
        # id of a zero-padded tensor -> (padded, unpadded, pad), to fold the pad
        # into the conv that follows.
        self.padded_outputs: Dict[int, Tuple[Tensor, Tensor, Callable]] = {}
        self.names: Dict[nn.Module, str] = {}
        if self.model is not None:
            self.names = {m: n or type(m).__name__ for n, m in self.model.named_modules()}
        self.captures = [LayerCapture(layer, self.names.get(layer, type(layer).__name__)) for layer in self.layers]
        self.handles: List[Any] = []
        self.captured = 0
        self.output: Optional[Tensor] = None

    # ---------------------------------------------------------------- helpers
    @property
    def suspended(self) -> bool:
        return self.suspend_depth > 0

    def current_module(self) -> Tuple[Optional[nn.Module], str]:
        if self.module_stack:
            return self.module_stack[-1]
        return None, "<forward function>"

    def _next_order(self) -> int:
        self.captured += 1
        return self.captured

    def _mine(self) -> bool:
        return threading.get_ident() == self.thread

    # ------------------------------------------------------------------ hooks
    def _register_hooks(self) -> None:
        if self.use_relevance and self.model is not None:
            for name, module in self.model.named_modules():
                name = name or type(module).__name__
                whole_rule = self._whole_module_rule(module, name)
                self.handles.append(
                    module.register_forward_pre_hook(self._push_hook(module, name, whole_rule))
                )
                self.handles.append(
                    module.register_forward_hook(self._pop_hook(module, whole_rule), always_call=True)
                )
        for capture in self.captures:
            if self.attribute_to_layer_input:
                hook = capture.layer.register_forward_pre_hook(self._capture_input(capture))
            else:
                hook = capture.layer.register_forward_hook(self._capture_output(capture))
            self.handles.append(hook)

    def _whole_module_rule(self, module: nn.Module, name: str) -> Optional[PropagationRule]:
        """A rule for a leaf module of a type the engine does not know, applied to
        the module as a whole (its input to its output)."""
        if not _is_unknown_leaf(module):
            return None
        return resolve_rule(module, name, self.rules)

    def _push_hook(self, module: nn.Module, name: str, whole_rule: Optional[PropagationRule]):
        def hook(mod, args):  # noqa: ANN001
            if not self._mine():
                return None
            self.module_stack.append((module, name))
            if whole_rule is not None:
                self.whole_module_inputs[id(module)] = args
                self.suspend_depth += 1
            return None

        return hook

    def _pop_hook(self, module: nn.Module, whole_rule: Optional[PropagationRule]):
        unknown_leaf = _is_unknown_leaf(module)

        def hook(mod, args, output):  # noqa: ANN001
            if not self._mine():
                return None
            _, name = self.module_stack.pop()
            if whole_rule is None:
                if unknown_leaf:
                    _check_handled(name, module, args, output)
                return None
            self.suspend_depth -= 1
            inputs = self.whole_module_inputs.pop(id(module))
            x = inputs[0]
            if not (isinstance(output, Tensor) and _graph_tensor(output) and _graph_tensor(x)):
                return None
            if isinstance(whole_rule, IdentityRule):
                if output.numel() != x.numel():
                    raise ValueError(
                        f"IdentityRule was given for module '{name}' "
                        f"({type(module).__name__}), but its output has a different "
                        "number of elements than its input."
                    )
                return _PassThroughGate(self.propagation, name, (x,)).apply(output, (x,))
            forward = module.forward
            return _ProportionalGate(
                self.propagation, name, (x,), lambda x_: forward(x_, *inputs[1:])
            ).apply(output, (x,))

        return hook

    def _capture_output(self, capture: LayerCapture):
        def hook(mod, args, output):  # noqa: ANN001
            if not self._mine():
                return None
            capture.calls += 1
            capture.order = self._next_order()
            if not isinstance(output, Tensor):
                raise ValueError(
                    f"The output of layer '{capture.name}' is a {type(output).__name__}, "
                    "not a tensor; choose a layer whose output is a feature map "
                    "(N x K x h x w)."
                )
            capture.tensor = output
            # Downstream gets a copy, so that an in-place operation after the
            # layer cannot overwrite the captured activation.
            return output.clone()

        return hook

    def _capture_input(self, capture: LayerCapture):
        def hook(mod, args):  # noqa: ANN001
            if not self._mine():
                return None
            capture.calls += 1
            capture.order = self._next_order()
            if not args or not isinstance(args[0], Tensor):
                raise ValueError(
                    f"The input of layer '{capture.name}' is not a tensor; choose a layer "
                    "whose input is a feature map (N x K x h x w)."
                )
            capture.tensor = args[0]
            return (args[0].clone(),) + tuple(args[1:])

        return hook

    def _check_modules(self) -> None:
        if self.model is None:
            return
        for name, module in self.model.named_modules():
            rule = self._whole_module_rule(module, name)
            if rule is not None and type(rule) not in (IdentityRule, EpsilonRule):
                raise TypeError(
                    f"Module '{name}' ({type(module).__name__}) is not a module type the "
                    "engine knows, so only IdentityRule or EpsilonRule can be applied "
                    f"to it as a whole; got {type(rule).__name__}."
                )

    # ----------------------------------------------------------------- passes
    def forward(self, inputs: Tensor, additional_forward_args: Any) -> Tensor:
        """Runs the forward pass with hooks and (for relevance) gates."""
        x = inputs.detach().requires_grad_(True)
        with torch.enable_grad():
            if self.use_relevance:
                with _RelevanceMode(self):
                    output = _run_forward(self.forward_func, x, None, additional_forward_args)
            else:
                output = _run_forward(self.forward_func, x, None, additional_forward_args)
        for capture in self.captures:
            if capture.calls == 0:
                raise ValueError(
                    f"Layer '{capture.name}' was not called during the forward pass: "
                    "pass a module that is part of the model's forward computation."
                )
            if capture.calls > 1:
                raise ValueError(
                    f"Layer '{capture.name}' is called {capture.calls} times in one "
                    "forward pass, so its activation is ambiguous. Choose a module that "
                    "is called once (e.g. the block that contains it)."
                )
            if capture.tensor.dim() != 4:
                where = "input" if self.attribute_to_layer_input else "output"
                raise ValueError(
                    f"The {where} of layer '{capture.name}' has shape "
                    f"{tuple(capture.tensor.shape)}; CAM methods need a 4-D feature map "
                    "(N x K x h x w). Choose a convolutional or pooling layer."
                )
        self.output = output
        return output

    def gradients(self, scores: Tensor, retain_graph: bool) -> List[Tensor]:
        """Gradients of ``scores.sum()`` at the captured layers."""
        self.propagation.mode = GRADIENT
        tensors = [c.tensor for c in self.captures]
        return list(torch.autograd.grad(scores.sum(), tensors, retain_graph=retain_graph))

    def relevance(
        self,
        source: Tensor,
        source_relevance: Tensor,
        captures: Sequence[LayerCapture],
        retain_graph: bool,
    ) -> List[Tensor]:
        """Propagates ``source_relevance`` at ``source`` down to ``captures``."""
        self.propagation.mode = RELEVANCE
        tensors = [c.tensor for c in captures]
        return list(
            torch.autograd.grad(source, tensors, source_relevance, retain_graph=retain_graph)
        )

    @contextmanager
    def hooked(self) -> Iterator["_Engine"]:
        """Hooks in place for the duration of the block; the model is restored after."""
        if self.model is not None and isinstance(
            self.model, (nn.DataParallel, nn.parallel.DistributedDataParallel)
        ):
            raise TypeError(
                "DataParallel models are not supported: pass the wrapped model "
                "(model.module) and inputs on one device."
            )
        if self.use_relevance:
            self._check_modules()
        with _exclusive(self.model):
            buffers = self._snapshot_buffers()
            try:
                self._register_hooks()
                yield self
            finally:
                for handle in self.handles:
                    handle.remove()
                self.handles.clear()
                self.module_stack.clear()
                self.weighted_outputs.clear()
                self.padded_outputs.clear()
                if buffers:
                    with torch.no_grad():
                        for buffer, saved in buffers:
                            buffer.copy_(saved)

    def _snapshot_buffers(self) -> List[Tuple[Tensor, Tensor]]:
        # A forward pass in training mode updates BatchNorm statistics; an
        # explanation must not, so they are put back afterwards.
        if self.model is None or not any(m.training for m in self.model.modules()):
            return []
        return [(b, b.detach().clone()) for b in self.model.buffers()]
