"""Input checks shared by the attribution methods and the metric.

Each check raises with a message that names the problem and the fix.
"""

from typing import Sequence

import torch
from torch import Tensor

from captum_shallowcam._captum_compat import TargetType


def check_finite(tensor: Tensor, what: str) -> None:
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        raise ValueError(
            f"{what} contain NaN or inf values; explanations of non-finite values are "
            f"meaningless. Clean the {what.lower()} first (e.g. torch.nan_to_num)."
        )


def target_indices(target: TargetType, output: Tensor) -> Tensor:
    """The class index per example, as a long tensor of shape (N,).

    ``target`` may be None (the predicted class), an int, a 0-d or 1-d tensor, or
    a list of ints with one entry per example.
    """
    if output.dim() != 2:
        raise ValueError(
            f"The model returns a tensor of shape {tuple(output.shape)}; these methods "
            "need class scores of shape (N, C). Wrap the model so that it returns logits."
        )
    n, num_classes = output.shape
    if target is None:
        return output.detach().argmax(dim=1)
    if isinstance(target, bool) or not isinstance(target, (int, Tensor, Sequence)):
        raise TypeError(
            f"target must be None, an int, a list of ints or a tensor, got "
            f"{type(target).__name__}."
        )
    if isinstance(target, Tensor):
        if target.dim() > 1 or target.is_floating_point():
            raise ValueError(
                f"target must be an integer tensor with 0 or 1 dimensions, got shape "
                f"{tuple(target.shape)} and dtype {target.dtype}."
            )
        indices = target.reshape(-1).to(device=output.device, dtype=torch.long)
    elif isinstance(target, int):
        indices = torch.tensor([target], device=output.device)
    else:
        if not all(isinstance(t, int) and not isinstance(t, bool) for t in target):
            raise TypeError(
                "target lists must hold one int per example; tuple targets for "
                "outputs with more than 2 dimensions are not supported."
            )
        indices = torch.tensor(list(target), device=output.device, dtype=torch.long)
    if indices.numel() == 1:
        indices = indices.expand(n)
    if indices.numel() != n:
        raise ValueError(
            f"target has {indices.numel()} entries but the inputs hold {n} examples; "
            "give one target per example or a single int for all."
        )
    bad = (indices < 0) | (indices >= num_classes)
    if bool(bad.any()):
        raise ValueError(
            f"target {indices[bad][0].item()} is out of range: the model has "
            f"{num_classes} classes (valid targets 0 to {num_classes - 1})."
        )
    return indices.clone()
