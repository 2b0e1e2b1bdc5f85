"""Input checks shared by the attribution methods and the metric.

Each check raises with a message that names the problem and the fix.
"""

from numbers import Integral

import torch
from torch import Tensor

from captum_shallowcam._captum_compat import TargetType


def all_finite(tensor: Tensor) -> bool:
    """Whether a tensor holds no NaN or inf. A finite sum proves it in one
    reduction (NaN and inf reach the sum); only a sum that is not finite (a
    bad value, or finite values whose sum overflows) is checked element by
    element."""
    if not tensor.is_floating_point():
        return True
    return bool(torch.isfinite(tensor.sum())) or bool(torch.isfinite(tensor).all())


def check_finite(tensor: Tensor, what: str) -> None:
    if not all_finite(tensor):
        raise ValueError(
            f"{what} contain NaN or inf values; explanations of non-finite values are "
            f"meaningless. Clean the {what.lower()} first (e.g. torch.nan_to_num)."
        )


def format_target(target: TargetType, n: int, device: torch.device) -> Tensor | None:
    """``target`` as one class index per example (a long tensor of shape (N,)),
    or None for "the predicted class".

    ``target`` may be None, an int (all examples), a 0-d or 1-d integer tensor,
    or a list with one int per example. Tuples are refused: in Captum a tuple
    indexes one output of more than 2 dimensions, which these methods and the
    metric do not take.
    """
    if target is None:
        return None
    if isinstance(target, Integral) and not isinstance(target, bool):
        check_int64(target, "target")
        return torch.full((n,), int(target), dtype=torch.long, device=device)
    if isinstance(target, Tensor):
        if (
            target.is_floating_point()
            or target.is_complex()
            or target.dtype == torch.bool
        ):
            raise TypeError(
                f"target must be an integer tensor of class indices, got dtype "
                f"{target.dtype}. Convert it with target.long()."
            )
        if target.dim() > 1:
            raise ValueError(
                f"target must be an integer tensor with 0 or 1 dimensions (one class "
                f"index per example), got shape {tuple(target.shape)}."
            )
        indices = target.reshape(-1).to(device=device, dtype=torch.long)
    elif isinstance(target, list):
        if not all(isinstance(t, Integral) and not isinstance(t, bool) for t in target):
            raise TypeError(
                "target lists must hold one int per example; tuple targets for "
                "outputs with more than 2 dimensions are not supported."
            )
        for t in target:
            check_int64(t, "target")
        indices = torch.tensor(
            [int(t) for t in target], dtype=torch.long, device=device
        )
    else:
        raise TypeError(
            f"target must be None, an int, a list of ints or a tensor, got "
            f"{type(target).__name__}."
            + (
                " Tuple targets (an index into outputs with more than 2 dimensions) "
                "are not supported; pass a list for one class per example."
                if isinstance(target, tuple)
                else ""
            )
        )
    if indices.numel() == 1 and not isinstance(target, list):
        return indices.expand(n).clone()
    if indices.numel() != n:
        raise ValueError(
            f"target has {indices.numel()} entries but the inputs hold {n} examples; "
            "give one target per example or a single int for all."
        )
    return indices


_INT64 = torch.iinfo(torch.int64)


def check_int64(value: Integral, name: str) -> None:
    """Raises ValueError for an int that a long tensor cannot hold."""
    if not _INT64.min <= int(value) <= _INT64.max:
        raise ValueError(
            f"{name} {value} is out of range: it does not fit in a 64-bit integer "
            f"({_INT64.min} to {_INT64.max})."
        )


def check_target_range(indices: Tensor, num_classes: int) -> None:
    """Raises if a class index is outside ``[0, num_classes)``."""
    bad = (indices < 0) | (indices >= num_classes)
    if bool(bad.any()):
        shown = ", ".join(str(v) for v in indices[bad].unique().tolist())
        raise ValueError(
            f"target {shown} is out of range: the model has {num_classes} classes "
            f"(valid targets 0 to {num_classes - 1})."
        )


def target_indices(target: TargetType, output: Tensor) -> Tensor:
    """The class index per example of the model's ``output`` (N x C), as a long
    tensor of shape (N,): ``target`` checked (see :func:`format_target`), or the
    predicted class when it is None."""
    if output.dim() != 2:
        raise ValueError(
            f"The model returns a tensor of shape {tuple(output.shape)}; these methods "
            "need class scores of shape (N, C). Wrap the model so that it returns logits."
        )
    indices = format_target(target, output.shape[0], output.device)
    if indices is None:
        return output.detach().argmax(dim=1)
    check_target_range(indices, output.shape[1])
    return indices


def check_image_batch(inputs: Tensor) -> None:
    """Raises unless ``inputs`` is a non-empty, finite N x C x H x W tensor."""
    if not isinstance(inputs, Tensor):
        raise TypeError(
            f"inputs must be a torch.Tensor of shape N x C x H x W, got "
            f"{type(inputs).__name__}."
        )
    if inputs.dim() != 4:
        raise ValueError(
            f"inputs must be a 4-D tensor N x C x H x W, got shape "
            f"{tuple(inputs.shape)}. Add the batch dimension with "
            "inputs.unsqueeze(0) for a single image."
        )
    if inputs.numel() == 0:
        raise ValueError(f"inputs must not be empty, got shape {tuple(inputs.shape)}.")
    if inputs.is_floating_point() and not torch.isfinite(inputs).all():
        raise ValueError(
            "inputs contain non-finite values (NaN or inf). Replace or drop "
            "those images before computing the metric."
        )


def check_positive_int(value: object, name: str, meaning: str) -> None:
    """Raises unless ``value`` is an int (not a bool) greater than 0."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int ({meaning}), got {value!r}.")
    if value <= 0:
        raise ValueError(f"{name} must be > 0 ({meaning}), got {value}.")
    check_int64(value, name)
