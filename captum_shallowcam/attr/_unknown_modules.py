"""Leaf modules of types the engine does not know.

Such a module needs no rule when its output comes from operations the engine
gates, or is its input rearranged (views, reshapes, permutations), whose
ordinary backward puts relevance back where it came from. Any other is
reported after the forward pass, all of them in one error that shows the
``rules`` that fix them. A module that returns several tensors (``nn.GRU``,
``nn.LSTM``: a tuple, nested or not) is judged by each of them.

Modules inside a parametrization (``torch.nn.utils.parametrize``:
``weight_norm``, ``spectral_norm``, ``orthogonal``) compute a weight, not an
activation: they are not on the path relevance takes, and need no rule.
"""

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from captum_shallowcam.attr._gates import is_gate_output
from captum_shallowcam.attr.rules import SUPPORTED_MODULES


def is_unknown_leaf(module: nn.Module) -> bool:
    return (
        not isinstance(module, SUPPORTED_MODULES)
        and next(module.children(), None) is None
    )


Path = tuple[int, ...]


def output_tensors(output: Any, path: Path = ()) -> list[tuple[Path, Tensor]]:
    """The tensors of a module's output with their positions: the output
    itself, or the tensors of a (nested) tuple or list of them."""
    if isinstance(output, Tensor):
        return [(path, output)]
    if isinstance(output, (tuple, list)):
        return [
            found
            for i, item in enumerate(output)
            for found in output_tensors(item, path + (i,))
        ]
    return []


def tensor_at(output: Any, path: Path) -> Tensor:
    for i in path:
        output = output[i]
    return output


def with_tensors(output: Any, replaced: dict[Path, Tensor], path: Path = ()) -> Any:
    """``output`` with the tensors at the positions of ``replaced`` replaced
    (tuples, named tuples and lists rebuilt as their own types)."""
    if path in replaced:
        return replaced[path]
    if isinstance(output, (tuple, list)):
        items = [
            with_tensors(item, replaced, path + (i,)) for i, item in enumerate(output)
        ]
        if isinstance(output, tuple) and hasattr(output, "_fields"):
            return type(output)(*items)
        return type(output)(items)
    return output


def _rearranging_node_types() -> frozenset:
    """Autograd node types of operations that only move elements (no
    arithmetic, none dropped or repeated): their backward moves relevance back
    where it came from. Taken from the operations themselves, not by name."""
    x = torch.zeros(1, 4, 2, 2, requires_grad=True)
    matrix = torch.zeros(2, 3, requires_grad=True)
    transposed_in_place = x.clone()
    transposed_in_place.transpose_(0, 1)
    outputs = [
        torch.ops.aten.alias(x),
        x.clone(),
        x.permute(1, 0, 2, 3),
        torch.pixel_shuffle(x, 2),
        torch.pixel_unshuffle(x, 2),
        torch.ops.aten._reshape_alias(x, (4, 4), (4, 1)),
        x.squeeze(),
        x.squeeze(0),
        x.squeeze((0,)),
        x.transpose(0, 1),
        transposed_in_place,
        matrix.t().reshape(-1),  # a copy, then an unsafe view
        x.unsqueeze(0),
        x.view(-1),
    ]
    return frozenset(type(t.grad_fn) for t in outputs)


_REARRANGING = _rearranging_node_types()


def rearranges(output: Tensor, x: Tensor) -> bool:
    """Whether ``output`` is ``x`` rearranged: only element-moving operations
    (reshape, permute, ...) lie between them in the autograd graph."""
    node = output.grad_fn
    while node is not None and type(node) in _REARRANGING:
        inputs = [n for n, _ in node.next_functions if n is not None]
        if len(inputs) != 1:
            return False
        node = inputs[0]
        if node is x.grad_fn or getattr(node, "variable", None) is x:
            return True
    return False


def unhandled_operation(module: nn.Module, args: tuple, output: Any) -> str | None:
    """The operation (autograd node name) behind the output of a leaf module of
    unknown type, or None when the engine handles it: its output comes from an
    operation the engine gates, or is its input rearranged (a view, a reshape,
    a permutation: einops' ``Rearrange``, a window partition). A module that
    returns several tensors is unhandled if one of them is."""
    for _, tensor in output_tensors(output):
        operation = _unhandled_tensor(args, tensor)
        if operation is not None:
            return operation
    return None


def _unhandled_tensor(args: tuple, output: Tensor) -> str | None:
    if not output.requires_grad:
        return None
    x = args[0] if args else None
    if isinstance(x, Tensor) and (
        output is x
        or (output.data_ptr() == x.data_ptr() and output.numel() == x.numel())
        or (x.requires_grad and output.numel() == x.numel() and rearranges(output, x))
    ):
        return None
    if is_gate_output(output):
        return None
    return _operation_name(output)


def _operation_name(output: Tensor) -> str:
    """The autograd node that computes ``output``, below any rearrangement (a
    batch-first ``nn.GRU`` transposes the recurrence's output)."""
    node = output.grad_fn
    while node is not None and type(node) in _REARRANGING:
        inputs = [n for n, _ in node.next_functions if n is not None]
        if len(inputs) != 1:
            break
        node = inputs[0]
    return type(node).__name__ if node is not None else "unknown"


def no_rule_error(unhandled: Sequence[tuple[str, str, str, bool]]) -> TypeError:
    """One error for every leaf module (name, type, operation, whether its
    output has as many elements as its input) with no rule, so that a model
    needs one fix, not one per module. IdentityRule is only suggested where it
    can apply: to modules that keep the number of elements."""
    resizing = {kind for _, kind, _, same_size in unhandled if not same_size}
    kinds = list(dict.fromkeys(kind for _, kind, _, _ in unhandled))
    example = ", ".join(
        f"{kind}: {'EpsilonRule' if kind in resizing else 'IdentityRule'}()"
        for kind in kinds
    )
    if len(unhandled) == 1:
        name, kind, operation, _ = unhandled[0]
        problem = (
            f"Module '{name}' ({kind}) has no LRP rule: its output comes from an "
            f"operation the relevance engine cannot propagate through ({operation})"
        )
    else:
        shown = ", ".join(
            f"'{name}' ({kind}, {op})" for name, kind, op, _ in unhandled[:5]
        )
        more = f" and {len(unhandled) - 5} more" if len(unhandled) > 5 else ""
        problem = (
            f"{len(unhandled)} modules have no LRP rule: their outputs come from "
            f"operations the relevance engine cannot propagate through: {shown}{more}"
        )
    if not resizing:
        which = (
            "for element-wise modules or EpsilonRule() for linear ones (or set "
            "module.rule as in captum.attr.LRP)."
        )
    elif len(resizing) == len(kinds):
        which = (
            "(EpsilonRule() applies a module as a whole, also one whose output has "
            "a different number of elements than its input, such as an upsampling "
            "or an unpooling; or set module.rule as in captum.attr.LRP)."
        )
    else:
        which = (
            "(IdentityRule() for element-wise modules; EpsilonRule() for linear ones "
            "and for those whose output has a different number of elements than "
            "their input; or set module.rule as in captum.attr.LRP)."
        )
    return TypeError(
        f"{problem}. Give {'it a rule' if len(unhandled) == 1 else 'their types rules'} "
        f"when constructing the method, e.g. rules={{{example}}} {which}"
    )


def same_numel(x: Any, output: Any) -> bool:
    """Whether each tensor of ``output`` has as many elements as ``x``."""
    tensors = output_tensors(output)
    return (
        isinstance(x, Tensor)
        and bool(tensors)
        and all(x.numel() == t.numel() for _, t in tensors)
    )
