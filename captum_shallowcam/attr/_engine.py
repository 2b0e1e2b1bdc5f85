"""The relevance engine: hooks, capture, the per-call lifecycle and the passes.

One forward pass serves a gradient and a relevance backward pass. During the
forward pass :class:`~._operations.RelevanceMode` puts a *gate* (:mod:`._gates`)
on every operation that needs an LRP rule: a custom autograd function whose
output has the operation's value and whose backward does one of two things,
depending on the pass:

* gradient pass: hands the gradient to the operation's own autograd graph,
  so the gradient is the model's true gradient;
* relevance pass: redistributes the incoming relevance onto the operation's
  inputs with the rule (:mod:`.rules`), skipping the operation's own backward.

So the model's weights are never touched (rules see copies), BatchNorm is
folded into the preceding conv (:mod:`._rewrites`), and residual additions
split relevance between their branches. This module owns the rest: module hooks
that track which module an operation runs in (to choose its rule and name it in
messages), apply rules to unknown modules as a whole (:mod:`._unknown_modules`
says which need one), and capture the target layers; the checks after the forward pass; the passes themselves; and the
lifetime of all of it (:meth:`_Engine.hooked`), which removes everything when
the call ends, also when it raises (:mod:`captum_shallowcam._model_state` puts
back what a train-mode forward pass changes).
"""

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, nullcontext
from typing import Any

import torch
from torch import Tensor, nn

from captum_shallowcam._captum_compat import PropagationRule, _run_forward
from captum_shallowcam._model_state import (
    buffers_preserved,
    eager,
    exclusive,
    original_module,
)
from captum_shallowcam._validation import all_finite
from captum_shallowcam.attr._gates import (
    GRADIENT,
    RELEVANCE,
    _ModuleGate,
    _PassThroughGate,
    _Propagation,
    graph_tensor,
)
from captum_shallowcam.attr._operations import RelevanceMode
from captum_shallowcam.attr._unknown_modules import (
    is_unknown_leaf,
    no_rule_error,
    output_tensors,
    rearranges,
    same_numel,
    tensor_at,
    unhandled_operation,
    with_tensors,
)
from captum_shallowcam.attr.rules import (
    NORMALISATION_MODULES,
    RelevanceRule,
    RuleMap,
    as_relevance_rule,
    default_rule,
    resolve_rule,
    weight_computations,
)


# ------------------------------------------------------------------ the engine
class LayerCapture:
    """What one forward pass captured at a target layer."""

    def __init__(self, layer: nn.Module, name: str) -> None:
        self.layer = layer
        self.name = name
        self.tensor: Tensor | None = None
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
        rules: RuleMap | None,
        attribute_to_layer_input: bool,
        use_relevance: bool,
        reshape_transform: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        # A torch.compile'd model is explained as the module it compiled.
        forward_func = original_module(forward_func)
        self.forward_func = forward_func
        self.model = forward_func if isinstance(forward_func, nn.Module) else None
        self.layers = list(layers)
        self.rules = rules
        self.attribute_to_layer_input = attribute_to_layer_input
        self.use_relevance = use_relevance
        self.reshape_transform = reshape_transform
        # Last dimensions of 4-D tensors that a Linear or LayerNorm works on: the
        # model runs channels-last (N x h x w x K) there.
        self.channels_last_widths: set[int] = set()
        self.propagation = _Propagation()
        self.thread = threading.get_ident()
        self.module_stack: list[tuple[nn.Module, str]] = []
        self.suspend_depth = 0
        self.whole_module_inputs: dict[int, tuple] = {}
        # The function mode of the current forward pass (relevance only).
        self.mode: RelevanceMode | None = None
        # Leaf modules of unknown type with no rule (name, type, operation),
        # reported together after the forward pass.
        self.unhandled: list[tuple[str, str, str, bool]] = []
        self.names: dict[nn.Module, str] = {}
        # Parametrizations (weight_norm, ...): they compute weights, not activations.
        self.weight_computations: set[nn.Module] = set()
        if self.model is not None:
            self.weight_computations = weight_computations(self.model)
            self.names = {
                m: n or type(m).__name__ for n, m in self.model.named_modules()
            }
        self.captures = [
            LayerCapture(layer, self.names.get(layer, type(layer).__name__))
            for layer in self.layers
        ]
        self.handles: list[Any] = []
        self.captured = 0
        # The first product of two activations above an explained layer
        # (module name, module type, operation), refused after the forward pass.
        self.product: tuple[str, str, str] | None = None

    # ---------------------------------------------------------------- helpers
    @property
    def suspended(self) -> bool:
        return self.suspend_depth > 0

    def current_module(self) -> tuple[nn.Module | None, str]:
        if self.module_stack:
            return self.module_stack[-1]
        return None, "<forward function>"

    def rule_for_operation(self) -> RelevanceRule:
        """The rule of a conv or linear operation running now: the rule of the
        innermost module around it that has one (a rule given for a block
        covers the operations inside it), else the default."""
        for module, name in reversed(self.module_stack):
            rule = resolve_rule(module, name, self.rules)
            if rule is not None:
                return as_relevance_rule(rule)
        return default_rule()

    def note_product_of_activations(self, operation: str, operands: list) -> None:
        if self.product is not None or not self.captured:
            return  # one is enough; below every layer relevance never comes
        # Attention passes its query (and key) once: count them as two.
        attention = operation in ("scaled_dot_product_attention",
                                  "multi_head_attention_forward")  # fmt: skip
        needed = 1 if attention else 2
        if sum(self._depends_on_layers(t) for t in operands[:2]) >= needed:
            module, name = self.current_module()
            kind = type(module).__name__ if module is not None else "function"
            self.product = (name, kind, operation)

    def _depends_on_layers(self, tensor: Tensor) -> bool:
        """Whether ``tensor`` is computed from a captured layer's tensor."""
        if not graph_tensor(tensor) or tensor.grad_fn is None:
            return False
        targets = {c.tensor.grad_fn for c in self.captures if c.tensor is not None}
        leaves = {id(c.tensor) for c in self.captures if c.tensor is not None}
        seen: set[Any] = set()
        stack = [tensor.grad_fn]
        while stack:
            node = stack.pop()
            if node is None or node in seen:
                continue
            if node in targets or id(getattr(node, "variable", None)) in leaves:
                return True
            seen.add(node)
            stack.extend(n for n, _ in node.next_functions)
        return False

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
                    module.register_forward_pre_hook(
                        self._push_hook(module, name, whole_rule)
                    )
                )
                self.handles.append(
                    module.register_forward_hook(
                        self._pop_hook(module, whole_rule), always_call=True
                    )
                )
        if self.model is not None and self.reshape_transform is None:
            for module in self.model.modules():
                if isinstance(module, (nn.Linear, nn.LayerNorm)):
                    self.handles.append(
                        module.register_forward_pre_hook(self._note_channels_last)
                    )
        for capture in self.captures:
            if self.attribute_to_layer_input:
                hook = capture.layer.register_forward_pre_hook(
                    self._capture_input(capture)
                )
            else:
                hook = capture.layer.register_forward_hook(
                    self._capture_output(capture)
                )
            self.handles.append(hook)

    def _whole_module_rule(
        self, module: nn.Module, name: str
    ) -> PropagationRule | None:
        """A rule for a leaf module of a type the engine does not know, or one the
        user gave a normalisation, applied to the module as a whole (its input
        to its output)."""
        if module in self.weight_computations or not (
            is_unknown_leaf(module) or isinstance(module, NORMALISATION_MODULES)
        ):
            return None
        return resolve_rule(module, name, self.rules)

    def _push_hook(
        self, module: nn.Module, name: str, whole_rule: PropagationRule | None
    ):
        def hook(mod, args):  # noqa: ANN001
            if not self._mine():
                return None
            self.module_stack.append((module, name))
            if whole_rule is not None:
                self.whole_module_inputs[id(module)] = args
                self.suspend_depth += 1
            return None

        return hook

    def _pop_hook(self, module: nn.Module, whole_rule: PropagationRule | None):
        unknown_leaf = (
            is_unknown_leaf(module) and module not in self.weight_computations
        )
        rule = None if whole_rule is None else as_relevance_rule(whole_rule)

        def hook(mod, args, output):  # noqa: ANN001
            if not self._mine():
                return None
            _, name = self.module_stack.pop()
            if whole_rule is None:
                if unknown_leaf:
                    operation = unhandled_operation(module, args, output)
                    if operation is not None:
                        same_size = bool(args) and same_numel(args[0], output)
                        self.unhandled.append(
                            (name, type(module).__name__, operation, same_size)
                        )
                return None
            self.suspend_depth -= 1
            inputs = self.whole_module_inputs.pop(id(module))
            x = inputs[0] if inputs else None
            if not (isinstance(x, Tensor) and graph_tensor(x)):
                return None
            forward = module.forward
            # Each tensor of the output (one, or those of a tuple: nn.GRU) gets
            # its own gate, through the part of the module that computes it.
            gated = {
                path: self._whole_module_gate(
                    name,
                    module,
                    whole_rule,
                    rule,
                    x,
                    tensor,
                    lambda x_, path=path: tensor_at(forward(x_, *inputs[1:]), path),
                )
                for path, tensor in output_tensors(output)
                if graph_tensor(tensor)
            }
            if not gated:
                return None
            return (
                gated[()] if isinstance(output, Tensor) else with_tensors(output, gated)
            )

        return hook

    def _whole_module_gate(
        self,
        name: str,
        module: nn.Module,
        whole_rule: PropagationRule,
        rule: RelevanceRule,
        x: Tensor,
        output: Tensor,
        forward: Callable[[Tensor], Tensor],
    ) -> Tensor:
        """``output`` (computed from ``x`` by ``forward``) behind a gate that
        applies the user's rule for ``module`` as a whole."""
        if rule.element_wise:
            if output.numel() == x.numel() and rearranges(output, x):
                return output  # its backward puts relevance where it came from
            if output.numel() != x.numel():
                raise ValueError(
                    f"{type(whole_rule).__name__} was given for module '{name}' "
                    f"({type(module).__name__}), but its output has a different "
                    "number of elements than its input."
                )
            return _PassThroughGate(self.propagation, name, (x,)).apply(output, (x,))
        return _ModuleGate(self.propagation, name, (x,), forward, rule).apply(
            output, (x,)
        )

    def _note_channels_last(self, module: nn.Module, args: tuple) -> None:
        if isinstance(module, nn.Linear):
            width = module.in_features
        elif len(module.normalized_shape) == 1:
            width = module.normalized_shape[0]
        else:
            return  # a LayerNorm over several dimensions
        x = args[0] if args else None
        if self._mine() and isinstance(x, Tensor) and x.dim() == 4:
            if x.shape[-1] == width:
                self.channels_last_widths.add(width)

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
            if rule is not None and not as_relevance_rule(rule).applies_to_modules():
                what = (
                    "is a normalisation"
                    if isinstance(module, NORMALISATION_MODULES)
                    else "is not a module type the engine knows"
                )
                raise TypeError(
                    f"Module '{name}' ({type(module).__name__}) {what}, so only "
                    "IdentityRule or EpsilonRule can be applied to it as a whole; got "
                    f"{type(rule).__name__}."
                )

    # ----------------------------------------------------------------- passes
    def _clear_forward_tables(self) -> None:
        """Drops what is only needed during the forward pass (see
        :meth:`RelevanceMode.clear_tables`)."""
        if self.mode is not None:
            self.mode.clear_tables()

    def forward(self, inputs: Tensor, additional_forward_args: Any) -> Tensor:
        """Runs the forward pass with hooks and (for relevance) gates."""
        # A detached copy that requires grad: the graph exists even with frozen
        # parameters or under an outer no_grad, and the user's tensor is untouched.
        if isinstance(inputs, tuple):
            x = tuple(
                _normal(t).detach().requires_grad_(t.is_floating_point())
                for t in inputs
            )
        else:
            x = _normal(inputs).detach().requires_grad_(True)
        if isinstance(additional_forward_args, tuple):
            additional_forward_args = tuple(_normal(a) for a in additional_forward_args)
        else:
            additional_forward_args = _normal(additional_forward_args)
        self.mode = (
            RelevanceMode(self, self.propagation) if self.use_relevance else None
        )
        gates = self.mode if self.mode is not None else nullcontext()
        with torch.enable_grad(), gates:
            output = _run_forward(self.forward_func, x, None, additional_forward_args)
        self._clear_forward_tables()
        if not isinstance(output, Tensor):
            raise TypeError(_not_a_tensor_message(output))
        _check_finite(output, "output")
        if self.unhandled:
            raise no_rule_error(self.unhandled)
        if self.product is not None:
            name, kind, operation = self.product
            raise TypeError(
                f"Module '{name}' ({kind}) multiplies two tensors computed from the "
                f"explained layer ({operation}), as attention does: the relevance "
                "engine has no LRP rule for a product of activations, so the map "
                "would not be a relevance. Explain this model with LayerCam (with "
                "reshape_transform for a layer whose output is not N x K x h x w), "
                "or a layer after the last attention."
            )
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
            self._check_layout(capture)
        self._check_connected(output)
        return output

    def _check_layout(self, capture: LayerCapture) -> None:
        """The captured tensor (after ``reshape_transform``) is N x K x h x w."""
        where = "input" if self.attribute_to_layer_input else "output"
        shape = tuple(capture.tensor.shape)
        if self.reshape_transform is not None:
            reshaped = self.reshape_transform(capture.tensor.detach())
            if not isinstance(reshaped, Tensor) or reshaped.dim() != 4:
                got = (
                    tuple(reshaped.shape)
                    if isinstance(reshaped, Tensor)
                    else type(reshaped).__name__
                )
                raise ValueError(
                    f"reshape_transform turned the {where} of layer '{capture.name}' "
                    f"({shape}) into {got}; it must return a 4-D feature map "
                    "N x K x h x w."
                )
            if reshaped.shape[0] != shape[0]:
                raise ValueError(
                    f"reshape_transform turned the {where} of layer '{capture.name}' "
                    f"({shape}) into {tuple(reshaped.shape)}: it must keep the "
                    "batch dimension N first."
                )
            return
        if len(shape) != 4:
            raise ValueError(
                f"The {where} of layer '{capture.name}' has shape "
                f"{shape}; CAM methods need a 4-D feature map "
                "(N x K x h x w). Choose a convolutional or pooling layer"
                + (
                    ", or pass LayerCam a reshape_transform that brings tokens to "
                    "N x K x h x w."
                    if len(shape) == 3
                    else "."
                )
            )
        if shape[-1] in self.channels_last_widths and shape[1] != shape[-1]:
            raise ValueError(
                f"The {where} of layer '{capture.name}' has shape {shape} and looks "
                f"channels-last (N x h x w x K): the model applies a Linear or "
                f"LayerNorm over the last dimension ({shape[-1]}) of 4-D tensors, so "
                "it would be taken as N x K x h x w with the wrong axes. Pass "
                "LayerCam reshape_transform=lambda t: t.permute(0, 3, 1, 2)."
            )

    def _check_connected(self, output: Tensor) -> None:
        """Every captured layer is joined to the output by autograd, and no
        reentrant checkpoint (which ``torch.autograd.grad`` cannot run) is
        between them; otherwise an error naming the cause and the fix."""
        if not output.is_floating_point():
            raise TypeError(
                f"The model's output has dtype {output.dtype}: class scores must be "
                "floating point to take gradients. Return the logits (e.g. before "
                ".argmax() or .long())."
            )
        if output.grad_fn is None:
            raise ValueError(
                "The model's output does not depend on its input through autograd: "
                + _CUT
                + "."
            )
        seen: set[Any] = set()
        reentrant = False
        stack = [output.grad_fn]
        while stack:
            node = stack.pop()
            if node is None or node in seen:
                continue
            seen.add(node)
            reentrant = reentrant or type(node).__name__ == "CheckpointFunctionBackward"
            stack.extend(n for n, _ in node.next_functions)
        if reentrant:
            raise ValueError(
                "The model uses torch.utils.checkpoint with use_reentrant=True, "
                "which cannot give gradients at a layer (torch.autograd.grad). Pass "
                "use_reentrant=False to checkpoint (the same values; PyTorch's "
                "recommended setting), or call the model without checkpointing "
                "for the explanation."
            )
        variables = {
            id(getattr(node, "variable", None))
            for node in seen
            if type(node).__name__ == "AccumulateGrad"
        }
        for capture in self.captures:
            tensor = capture.tensor
            if tensor.grad_fn not in seen and id(tensor) not in variables:
                raise _not_joined(capture)

    def gradients(self, scores: Tensor, retain_graph: bool) -> list[Tensor]:
        """Gradients of ``scores.sum()`` at the captured layers."""
        self.propagation.mode = GRADIENT
        tensors = [c.tensor for c in self.captures]
        grads = torch.autograd.grad(
            scores.sum(), tensors, retain_graph=retain_graph, allow_unused=True
        )
        _check_used(grads, self.captures)
        return [_check_finite(g.detach(), "gradient") for g in grads]

    def relevance(
        self,
        source: Tensor,
        source_relevance: Tensor,
        captures: Sequence[LayerCapture],
        retain_graph: bool,
    ) -> list[Tensor]:
        """Propagates ``source_relevance`` at ``source`` down to ``captures``."""
        self.propagation.mode = RELEVANCE
        tensors = [c.tensor for c in captures]
        relevances = torch.autograd.grad(
            source,
            tensors,
            source_relevance,
            retain_graph=retain_graph,
            allow_unused=True,
        )
        _check_used(relevances, captures)
        return [_check_finite(r.detach(), "relevance") for r in relevances]

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
        # The passes run with autograd also under torch.inference_mode().
        with exclusive(self.model), torch.inference_mode(False), eager(self.model):
            with buffers_preserved(self.forward_func), self._precision():
                try:
                    self._register_hooks()
                    yield self
                finally:
                    for handle in self.handles:
                        handle.remove()
                    self.handles.clear()
                    self.module_stack.clear()
                    self._clear_forward_tables()

    def _precision(self) -> ExitStack:
        """Relevance is computed in the model's own dtype: an outer
        ``torch.autocast`` is switched off for the call, as half-precision inputs
        are refused (the rules divide by small activations). The gradient
        methods explain the model as it is run, autocast included."""
        stack = ExitStack()
        if self.use_relevance:
            for device_type in _AUTOCAST_DEVICE_TYPES:
                if _autocast_enabled(device_type):
                    stack.enter_context(torch.autocast(device_type, enabled=False))
        return stack


_AUTOCAST_DEVICE_TYPES = ("cpu", "cuda", "xpu", "mps", "hpu")


def _autocast_enabled(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except RuntimeError:  # a device type this build of torch does not know
        return False


_CUT = (
    "the computation after it is cut: a .detach(), torch.no_grad() around part "
    "of the model, or a module without gradients (a dynamically quantized "
    "nn.Linear). Explain a layer after the cut, or run the explanation on a "
    "model without it (the float model, no detach)"
)


def _not_joined(capture: LayerCapture) -> ValueError:
    return ValueError(
        f"Layer '{capture.name}' is not joined to the model's output by autograd: "
        + _CUT
        + "."
    )


def _check_used(results: Sequence[Tensor | None], captures: Sequence[LayerCapture]):
    """A backward pass that reached no captured tensor met a cut (an operation
    whose backward gives no gradient)."""
    for result, capture in zip(results, captures):
        if result is None:
            raise _not_joined(capture)


def _not_a_tensor_message(output: Any) -> str:
    """How to wrap a model whose output is a container, not the class scores."""
    if isinstance(output, dict):
        what, pick = (
            f"a dict with keys {list(output)[:5]}",
            f"[{next(iter(output), 'key')!r}]",
        )
    elif isinstance(output, tuple) and hasattr(output, "_fields"):
        what = f"a named tuple {type(output).__name__}{tuple(output._fields)}"
        pick = f".{output._fields[0]}" if output._fields else "[0]"
    elif isinstance(output, (tuple, list)):
        what, pick = f"a {type(output).__name__} of {len(output)} elements", "[0]"
    else:
        what, pick = f"a {type(output).__name__}", ""
    return (
        f"The model returned {what}, not a tensor of class scores (N x C). Wrap it "
        "in a module that returns the scores, e.g. class Scores(nn.Module) with "
        f"forward(self, x): return self.model(x){pick}, and explain Scores(model) "
        "with the same layer."
    )


def _normal(value: Any) -> Any:
    """A tensor made under ``torch.inference_mode()`` copied to a normal one,
    which autograd can record; anything else as it is."""
    if isinstance(value, Tensor) and value.is_inference():
        return value.clone()
    return value


def _check_finite(tensor: Tensor, what: str) -> Tensor:
    """``tensor``, or a ValueError when the model produced NaN or inf in it."""
    if not all_finite(tensor):
        raise ValueError(
            f"The model produced NaN or inf values (in its {what}) from finite "
            "inputs, so the explanation would be NaN. Check the model's weights "
            "and buffers for NaN or inf (e.g. torch.isfinite(p).all() for each "
            "parameter) and for an overflow (run it in float32 or float64)."
        )
    return tensor
