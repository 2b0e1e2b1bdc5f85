r"""Running a model on rows of perturbed examples, shared by the perturbation
metrics (:mod:`captum_shallowcam.metrics`) and the perturbation CAM methods
(:mod:`captum_shallowcam.attr`): a row is a perturbed copy of one example, and
gets that example's ``additional_forward_args``."""

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from captum_shallowcam._captum_compat import _run_forward

__all__ = [
    "check_additional_forward_args",
    "check_outputs",
    "run_forward",
    "select_rows",
]


def select_rows(additional_forward_args: tuple | None, examples: Tensor) -> Any:
    r"""The arguments of the examples of some rows (tensors with a batch dimension
    are indexed by example, everything else is passed as it is)."""
    if additional_forward_args is None:
        return None
    return tuple(
        arg.index_select(0, examples.to(arg.device))
        if isinstance(arg, Tensor) and arg.dim() > 0
        else arg
        for arg in additional_forward_args
    )


def run_forward(
    forward_func: Callable[..., Tensor],
    batch: Tensor,
    additional_forward_args: tuple[Any, ...] | None,
    examples: Tensor,
) -> Tensor:
    r"""Runs `forward_func` on `batch`, whose rows belong to `examples`.

    Tensor arguments with a batch dimension are indexed by example, so that
    each perturbed image gets the arguments of the example it comes from.
    """
    additional_forward_args = select_rows(additional_forward_args, examples)
    output = _run_forward(forward_func, batch, None, additional_forward_args)
    if isinstance(output, torch.futures.Future):
        output = output.wait()
    check_outputs(output, batch.shape[0])
    return output


def check_outputs(outputs: Any, n: int) -> None:
    if not isinstance(outputs, Tensor) or outputs.dim() != 2 or outputs.shape[0] != n:
        shape = (
            tuple(outputs.shape)
            if isinstance(outputs, Tensor)
            else f"a {type(outputs).__name__}"
        )
        raise ValueError(
            f"forward_func must return a 2-D tensor B x K (one row of K class "
            f"scores per image) for a batch of B = {n} images, got {shape}. "
            "Wrap the model so that it returns per-class outputs."
        )


def check_additional_forward_args(
    additional_forward_args: tuple[Any, ...] | None, n: int
) -> None:
    if additional_forward_args is None:
        return
    for arg in additional_forward_args:
        if isinstance(arg, Tensor) and arg.dim() > 0 and arg.shape[0] != n:
            raise ValueError(
                f"additional_forward_args tensors must have one row per example "
                f"(first dimension {n}), got shape {tuple(arg.shape)}. Pass "
                "per-batch constants as 0-d tensors or non-tensor values."
            )
