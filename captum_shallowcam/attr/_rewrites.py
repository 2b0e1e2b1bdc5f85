"""Model rewrites (canonization) done on the fly, for the relevance pass only.

Each is a small pure function: the model is never changed, the rule of the
rewritten operation sees the rewritten weights.

* :func:`fold_batch_norm`: a BatchNorm after a conv or linear map becomes part
  of its affine map;
* :func:`zero_pad_amounts` and :func:`conv2d_with_padding`: a constant zero
  ``F.pad`` right before a conv becomes the conv's own padding, so padded
  positions get no relevance.
"""

import inspect
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

_BATCH_NORM_SIGNATURE = inspect.signature(F.batch_norm)
_PAD_SIGNATURE = inspect.signature(F.pad)
_CONV2D_PARAMETERS = (
    "input",
    "weight",
    "bias",
    "stride",
    "padding",
    "dilation",
    "groups",
)


def batch_norm_arguments(args: tuple, kwargs: dict) -> dict[str, Any]:
    """The arguments of an ``F.batch_norm`` call by name, defaults filled in."""
    bound = _BATCH_NORM_SIGNATURE.bind(*args, **kwargs)
    bound.apply_defaults()
    return bound.arguments


def fold_batch_norm(
    weight: Tensor, bias: Tensor | None, p: dict[str, Any]
) -> tuple[Tensor, Tensor]:
    r"""The weight and bias of ``batch_norm(conv(x, weight, bias))`` as one
    affine map, :math:`W' = W s`, :math:`b' = (b - \mu) s + \beta` with
    :math:`s = \gamma / \sqrt{\sigma^2 + \varepsilon}`; ``p`` as given by
    :func:`batch_norm_arguments` (batch statistics of ``p["input"]`` in
    training mode)."""
    x = p["input"]
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
    folded_weight = weight * scale.reshape((-1,) + (1,) * (weight.dim() - 1))
    folded_bias = shift if bias is None else bias * scale + shift
    return folded_weight, folded_bias


def zero_pad_amounts(
    args: tuple, kwargs: dict
) -> tuple[Tensor, tuple[int, ...]] | None:
    """``(input, pad amounts)`` of an ``F.pad`` call that pads with zeros, or None."""
    bound = _PAD_SIGNATURE.bind(*args, **kwargs)
    bound.apply_defaults()
    p = bound.arguments
    if p["mode"] == "constant" and not p["value"]:
        return p["input"], tuple(p["pad"])
    return None


def conv2d_with_padding(
    func: Callable, args: tuple, kwargs: dict, amounts: tuple[int, ...]
) -> Callable | None:
    """The conv with a symmetric zero padding moved into its own ``padding``
    argument (no padded copy of the input in the relevance pass), or None."""
    if func is not torch.conv2d or len(amounts) != 4:
        return None
    left, right, top, bottom = amounts
    params = dict(zip(_CONV2D_PARAMETERS, args), **kwargs)
    if (
        left != right
        or top != bottom
        or params.get("padding", 0) not in (0, (0, 0), [0, 0])
    ):
        return None
    stride, dilation = params.get("stride", 1), params.get("dilation", 1)
    groups = params.get("groups", 1)

    def operation(x_: Tensor, w_: Tensor, b_: Tensor | None) -> Tensor:
        return torch.conv2d(x_, w_, b_, stride, (top, left), dilation, groups)

    return operation
