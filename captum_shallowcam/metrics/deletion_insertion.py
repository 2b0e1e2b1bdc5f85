"""Deletion / insertion metric for image attribution maps.

Implements the causal deletion and insertion game of RISE (Petsiuk, Das and
Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box Models",
BMVC 2018, https://arxiv.org/abs/1806.07421) in the style of
:mod:`captum.metrics`.
"""

import math
from collections.abc import Callable, Iterator
from numbers import Integral
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from captum.log import log_usage
from torch import Tensor

from captum_shallowcam._captum_compat import (
    TargetType,
    _format_additional_forward_args,
    _run_forward,
)
from captum_shallowcam._model_state import buffers_preserved
from captum_shallowcam._validation import (
    check_int64,
    check_target_range,
    format_target,
)

__all__ = ["DeletionInsertionResult", "deletion_insertion"]

_DEFAULT_MAX_EXAMPLES_PER_BATCH = 32
_BLUR_KERNEL_SIZE = 11
_BLUR_SIGMA = 5.0

SubstrateType = Tensor | Callable[[Tensor], Tensor] | None


class DeletionInsertionResult(NamedTuple):
    r"""Result of :func:`deletion_insertion`.

    Fields (N examples, S = ceil(H * W / step) + 1 curve points):

        deletion_auc (Tensor): N areas under the deletion curves
                (lower is better).
        insertion_auc (Tensor): N areas under the insertion curves
                (higher is better).
        overall (Tensor): N values of ``100 * (insertion_auc - deletion_auc)``
                (higher is better).
        deletion_curve (Tensor): N x S scores; column ``k`` is the score of
                the input with its top ``fractions[k]`` share of pixels
                replaced by the deletion substrate.
        insertion_curve (Tensor): N x S scores; column ``k`` is the score of
                the insertion substrate with its top ``fractions[k]`` share
                of pixels restored from the input.
        fractions (Tensor): S fractions of pixels perturbed at each point,
                from 0 to 1.
    """

    deletion_auc: Tensor
    insertion_auc: Tensor
    overall: Tensor
    deletion_curve: Tensor
    insertion_curve: Tensor
    fractions: Tensor


@log_usage()
def deletion_insertion(
    forward_func: Callable[..., Tensor],
    inputs: Tensor,
    attributions: Tensor,
    target: TargetType = None,
    additional_forward_args: Any = None,
    step: int = 224,
    deletion_substrate: SubstrateType = None,
    insertion_substrate: SubstrateType = None,
    score_func: Callable[[Tensor, Tensor], Tensor] | None = None,
    max_examples_per_batch: int | None = None,
) -> DeletionInsertionResult:
    r"""
    Deletion and insertion scores of image attribution maps, as defined in
    RISE (Petsiuk et al., BMVC 2018): https://arxiv.org/abs/1806.07421

    Pixels are ranked by decreasing attribution. The *deletion* game starts
    from the input and replaces the most important pixels, ``step`` pixels at
    a time, by a deletion substrate (by default zeros, which is the dataset
    mean colour for normalised inputs); a good attribution map makes the
    score of the target class drop fast, i.e. gives a small area under the
    curve. The *insertion* game starts from an insertion substrate (by
    default a blurred copy of the input) and restores the most important
    pixels of the input, ``step`` at a time; a good map makes the score rise
    fast, i.e. gives a large area under the curve.

    Point ``k`` (``k = 0 .. S - 1``, ``S = ceil(H * W / step) + 1``) of each
    curve perturbs the top ``min(k * step, H * W)`` pixels; all channels of a
    pixel are perturbed together. Hence ``deletion_curve[:, 0]`` is the score
    of the unperturbed input, ``deletion_curve[:, -1]`` that of the deletion
    substrate, ``insertion_curve[:, 0]`` that of the insertion substrate and
    ``insertion_curve[:, -1]`` that of the unperturbed input. The areas are
    computed with the trapezoidal rule over the fraction of perturbed
    pixels, ``min(k * step, H * W) / (H * W)``, so the x-axis spans [0, 1]
    even when ``step`` does not divide ``H * W``.

    Ties in the attribution map are broken by raster order: pixels are
    sorted with a stable sort (``torch.argsort(..., descending=True,
    stable=True)``) over the row-major flattened H x W map, so among equal
    values the top-left pixel is perturbed first. This is the same for
    every attribution method, so constant or coarse (e.g. upsampled
    low-resolution) maps are compared on equal terms.

    Perturbed images are built and scored in chunks of at most
    ``max_examples_per_batch`` images, so the memory use does not grow with
    the number of curve points. The unperturbed inputs are forwarded once
    and their score is used for both ``deletion_curve[:, 0]`` and
    ``insertion_curve[:, -1]``, so the metric makes ``N * (2 * S - 1)``
    image evaluations in all. Everything runs under ``torch.no_grad()`` on
    the device of ``inputs``.

    Args:

        forward_func (Callable):
                The forward function of the model or any modification of it.
                It must return an N x K tensor of outputs (e.g. class logits)
                for N images.

        inputs (Tensor): N x C x H x W batch of images, in the input space
                of the model (i.e. already normalised).

        attributions (Tensor): Attribution maps for `inputs`. One of:

                - N x 1 x h x w layer attribution maps (e.g. from
                  ``LayerGradCam``); they are upsampled to H x W with
                  bilinear interpolation, ``align_corners=False``, exactly
                  like ``LayerAttribution.interpolate(attributions, (H, W),
                  "bilinear")``.
                - N x C x H x W input-shaped attributions (e.g. from
                  ``Saliency`` or ``IntegratedGradients``); they are summed
                  over the channel dimension.
                - N x H x W pixel maps, used as they are.

                Higher values mean more important pixels.

        target (int, list, or Tensor, optional): Output index (class) whose
                score is tracked. Either a single integer (or a one-element
                tensor) applied to every example, or a list or 1-D tensor
                of N integers, one per example. If None, the class predicted
                for the unperturbed input (argmax of
                ``forward_func(inputs)``) is used.

                Default: None

        additional_forward_args (Any, optional): Extra arguments passed to
                `forward_func` after the (perturbed) images. Either a single
                argument or a tuple of arguments. Tensors with at least one
                dimension must have N rows and are indexed by example, like
                the images they go with; other arguments are passed
                unchanged.

                Default: None

        step (int, optional): Number of pixels perturbed between two curve
                points. The default, 224, is one row of a 224 x 224 image,
                as in the RISE paper.

                Default: 224

        deletion_substrate (Tensor or Callable, optional): Values that the
                deleted pixels take: a tensor that broadcasts to the shape
                of `inputs`, or a callable that maps `inputs` to such a
                tensor. If None, ``torch.zeros_like(inputs)`` (the dataset
                mean colour for mean/std-normalised inputs).

                Default: None

        insertion_substrate (Tensor or Callable, optional): Image that the
                insertion game starts from: a tensor that broadcasts to the
                shape of `inputs`, or a callable that maps `inputs` to such
                a tensor. If None, ``torchvision.transforms.functional.
                gaussian_blur(inputs, kernel_size=11, sigma=5)``, which
                needs H and W of at least 6.

                Default: None

        score_func (Callable, optional): Maps the B x K outputs of
                `forward_func` on a batch of B images and the B targets
                (a 1-D long tensor) to B scores. If None, the softmax
                probability of the target class is used.

                Default: None

        max_examples_per_batch (int, optional): The maximum number of images
                (perturbed or not) passed to `forward_func` in one call.
                Deletion and insertion images, and images of different
                examples, share the same chunks. If None, 32 is used.

                Default: None

    Returns:

        result (DeletionInsertionResult): A named tuple with fields

            - **deletion_auc** (*Tensor*): N deletion AUCs (lower is
              better).
            - **insertion_auc** (*Tensor*): N insertion AUCs (higher is
              better).
            - **overall** (*Tensor*): N values of ``100 * (insertion_auc -
              deletion_auc)`` (higher is better).
            - **deletion_curve** (*Tensor*): N x S deletion scores.
            - **insertion_curve** (*Tensor*): N x S insertion scores.
            - **fractions** (*Tensor*): S fractions of perturbed pixels,
              ``min(k * step, H * W) / (H * W)``.

            All tensors are on the device of `inputs`, with its dtype (or
            the default dtype when `inputs` is not floating point).

    Raises:

        TypeError: if `inputs` or `attributions` is not a tensor, `step`
                or `max_examples_per_batch` is not an int, or `target` has
                an unsupported type.
        ValueError: if a shape, value or target is invalid; the message
                names the problem and how to fix it.

    Examples::

        >>> # ImageClassifier takes a single input tensor of images Nx3x224x224,
        >>> # and returns an Nx1000 tensor of class logits.
        >>> net = ImageClassifier().eval()
        >>> input = torch.randn(2, 3, 224, 224)
        >>> layer_gc = LayerGradCam(net, net.features[-1])
        >>> # N x 1 x 7 x 7 Grad-CAM maps for the predicted classes.
        >>> target = net(input).argmax(dim=1)
        >>> maps = layer_gc.attribute(input, target=target)
        >>> result = deletion_insertion(net, input, maps, target=target)
        >>> result.deletion_auc, result.insertion_auc, result.overall
    """
    _check_inputs(inputs)
    n, channels, height, width = inputs.shape
    n_pixels = height * width
    _check_positive_int(step, "step", "a positive number of pixels per step")
    if max_examples_per_batch is None:
        max_examples_per_batch = _DEFAULT_MAX_EXAMPLES_PER_BATCH
    _check_positive_int(
        max_examples_per_batch,
        "max_examples_per_batch",
        "a positive number of images per forward call, or None for 32",
    )
    if score_func is None:
        score_func = _target_softmax_score

    # A train-mode model's BatchNorm statistics are put back afterwards.
    with torch.no_grad(), buffers_preserved(forward_func):
        pixel_attr = _pixel_attributions(attributions, inputs)
        target_tensor = format_target(target, n, inputs.device)
        additional_forward_args = _format_additional_forward_args(
            additional_forward_args
        )
        _check_additional_forward_args(additional_forward_args, n)
        del_sub = _make_substrate(deletion_substrate, inputs, "deletion_substrate")
        if insertion_substrate is None:
            _check_blur_size(inputs)
            ins_sub = None  # blurred example by example, as the chunks need them
        else:
            ins_sub = _make_substrate(insertion_substrate, inputs, "insertion_substrate")
        # Per-example state (pixel ranks, blurred start), built when an
        # example's first chunk needs it and dropped after its last, so memory
        # is bounded by max_examples_per_batch, not by N.
        states: dict[int, tuple[Tensor, Tensor]] = {}

        def example_state(example: int) -> tuple[Tensor, Tensor]:
            if example not in states:
                # rank[p] = position of pixel p in the (stable, descending)
                # ordering; point k perturbs the pixels with rank < k*step.
                order = torch.argsort(
                    pixel_attr[example], descending=True, stable=True
                )
                rank = torch.empty_like(order)
                rank[order] = torch.arange(n_pixels, device=order.device)
                one = inputs[example : example + 1]
                start = (
                    _blur(one) if ins_sub is None else ins_sub[example : example + 1]
                )
                states[example] = (rank, start)
            return states[example]

        n_points = math.ceil(n_pixels / step) + 1
        counts = torch.clamp(
            torch.arange(n_points, device=inputs.device) * step, max=n_pixels
        )
        curve_dtype = (
            inputs.dtype if inputs.is_floating_point() else torch.get_default_dtype()
        )
        fractions = counts.to(curve_dtype) / n_pixels

        # Unperturbed inputs: resolves/validates the targets and gives the
        # first deletion point and the last insertion point.
        outputs = torch.cat(
            [
                _forward(
                    forward_func,
                    inputs[lo : lo + max_examples_per_batch],
                    additional_forward_args,
                    torch.arange(lo, min(lo + max_examples_per_batch, n)),
                )
                for lo in range(0, n, max_examples_per_batch)
            ]
        )
        _check_outputs(outputs, n)
        if target_tensor is None:
            target_tensor = outputs.argmax(dim=1)
        else:
            target_tensor = target_tensor.to(outputs.device)
            check_target_range(target_tensor, outputs.shape[1])
        clean_scores = _score(score_func, outputs, target_tensor)
        del outputs

        # curves[0] = deletion, curves[1] = insertion.
        curves = torch.empty((2, n, n_points), dtype=curve_dtype, device=inputs.device)
        curves[0, :, 0] = clean_scores
        curves[1, :, -1] = clean_scores

        for chunk in _chunks(n, n_points, max_examples_per_batch):
            for done in [e for e in states if e < chunk[0][0]]:
                del states[done]
            size = sum(hi - lo for _, _, lo, hi in chunk)
            batch = torch.empty(
                (size, channels, height, width),
                dtype=inputs.dtype,
                device=inputs.device,
            )
            row = 0
            for example, curve, lo, hi in chunk:
                rank, blurred = example_state(example)
                original = inputs[example : example + 1]
                start, end = (
                    (original, del_sub[example : example + 1])
                    if curve == 0
                    else (blurred, original)
                )
                mask = rank < counts[lo:hi, None]
                torch.where(
                    mask.view(hi - lo, 1, height, width),
                    end,
                    start,
                    out=batch[row : row + hi - lo],
                )
                row += hi - lo
            examples = torch.cat(
                [
                    torch.full((hi - lo,), example, dtype=torch.long)
                    for example, _, lo, hi in chunk
                ]
            )
            outputs = _forward(forward_func, batch, additional_forward_args, examples)
            _check_outputs(outputs, size)
            scores = _score(
                score_func,
                outputs,
                target_tensor.index_select(0, examples.to(target_tensor.device)),
            )
            row = 0
            for example, curve, lo, hi in chunk:
                curves[curve, example, lo:hi] = scores[row : row + hi - lo]
                row += hi - lo
            del batch, outputs, scores

        deletion_curve, insertion_curve = curves[0], curves[1]
        deletion_auc = torch.trapezoid(deletion_curve, x=fractions, dim=-1)
        insertion_auc = torch.trapezoid(insertion_curve, x=fractions, dim=-1)
        return DeletionInsertionResult(
            deletion_auc=deletion_auc,
            insertion_auc=insertion_auc,
            overall=100 * (insertion_auc - deletion_auc),
            deletion_curve=deletion_curve,
            insertion_curve=insertion_curve,
            fractions=fractions,
        )


def _chunks(
    n: int, n_points: int, max_batch: int
) -> Iterator[list[tuple[int, int, int, int]]]:
    r"""Splits the perturbed images into chunks of at most `max_batch` images.

    Yields lists of runs ``(example, curve, lo, hi)``: curve points
    ``lo .. hi - 1`` of curve ``curve`` (0 = deletion, 1 = insertion) of
    `example`. Deletion needs points 1 .. S-1 and insertion 0 .. S-2 (the
    remaining points are the unperturbed input). Every chunk but the last
    holds exactly `max_batch` images.
    """
    chunk: list[tuple[int, int, int, int]] = []
    room = max_batch
    for example in range(n):
        for curve, lo, hi in ((0, 1, n_points), (1, 0, n_points - 1)):
            while lo < hi:
                take = min(room, hi - lo)
                chunk.append((example, curve, lo, lo + take))
                lo += take
                room -= take
                if room == 0:
                    yield chunk
                    chunk = []
                    room = max_batch
    if chunk:
        yield chunk


def _forward(
    forward_func: Callable[..., Tensor],
    batch: Tensor,
    additional_forward_args: tuple[Any, ...] | None,
    examples: Tensor,
) -> Tensor:
    r"""Runs `forward_func` on `batch`, whose rows belong to `examples`."""
    if additional_forward_args is not None:
        additional_forward_args = tuple(
            (
                arg.index_select(0, examples.to(arg.device))
                if isinstance(arg, Tensor) and arg.dim() > 0
                else arg
            )
            for arg in additional_forward_args
        )
    output = _run_forward(forward_func, batch, None, additional_forward_args)
    if isinstance(output, torch.futures.Future):
        output = output.wait()
    _check_outputs(output, batch.shape[0])
    return output


def _target_softmax_score(outputs: Tensor, targets: Tensor) -> Tensor:
    r"""Softmax probability of the target class."""
    return torch.softmax(outputs, dim=1).gather(1, targets.unsqueeze(1)).squeeze(1)


def _score(
    score_func: Callable[[Tensor, Tensor], Tensor], outputs: Tensor, targets: Tensor
) -> Tensor:
    scores = score_func(outputs, targets)
    if not isinstance(scores, Tensor) or scores.numel() != outputs.shape[0]:
        shape = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores)
        raise ValueError(
            f"score_func must return one score per image: expected a tensor of "
            f"{outputs.shape[0]} elements for a batch of {outputs.shape[0]} "
            f"images, got {shape}. Make score_func map (B x K outputs, B "
            "targets) to B scores."
        )
    return scores.reshape(-1)


def _check_inputs(inputs: Tensor) -> None:
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


def _check_positive_int(value: Any, name: str, meaning: str) -> None:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int ({meaning}), got {value!r}.")
    if value <= 0:
        raise ValueError(f"{name} must be > 0 ({meaning}), got {value}.")
    check_int64(value, name)


def _pixel_attributions(attributions: Tensor, inputs: Tensor) -> Tensor:
    r"""Returns the N x (H * W) pixel attributions used for ranking."""
    n, channels, height, width = inputs.shape
    if not isinstance(attributions, Tensor):
        raise TypeError(
            f"attributions must be a torch.Tensor, got {type(attributions).__name__}."
        )
    shape = tuple(attributions.shape)
    accepted = (
        f"N x 1 x h x w (layer map), {tuple(inputs.shape)} (N x C x H x W, "
        f"input-shaped) or {(n, height, width)} (N x H x W)"
    )
    if attributions.dim() not in (3, 4) or shape[0] != n:
        raise ValueError(
            f"attributions of shape {shape} do not match inputs of shape "
            f"{tuple(inputs.shape)}: expected {accepted}, with the same number "
            f"of examples N = {n} as inputs."
        )
    attr = attributions.detach().to(inputs.device)
    if not attr.is_floating_point():
        attr = attr.to(torch.float64)
    if not torch.isfinite(attr).all():
        raise ValueError(
            "attributions contain non-finite values (NaN or inf). Fix the "
            "attribution method or replace them, e.g. with "
            "torch.nan_to_num(attributions)."
        )
    if attr.dim() == 3:
        if shape[1:] != (height, width):
            raise ValueError(
                f"attributions of shape {shape} do not match inputs of shape "
                f"{tuple(inputs.shape)}: an N x H x W map must be "
                f"{(n, height, width)}; expected {accepted}."
            )
        pixel = attr
    elif shape[1:] == (channels, height, width):
        pixel = attr.sum(dim=1)
    elif shape[1] == 1:
        pixel = F.interpolate(
            attr, size=(height, width), mode="bilinear", align_corners=False
        ).squeeze(1)
    else:
        raise ValueError(
            f"attributions of shape {shape} do not match inputs of shape "
            f"{tuple(inputs.shape)}: expected {accepted}. Sum or average "
            "multi-channel layer maps over channels (keepdim=True) first."
        )
    return pixel.reshape(n, height * width)


def _check_outputs(outputs: Any, n: int) -> None:
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


def _check_additional_forward_args(
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


def _check_blur_size(inputs: Tensor) -> None:
    if min(inputs.shape[-2:]) <= _BLUR_KERNEL_SIZE // 2:
        raise ValueError(
            f"the default insertion_substrate (Gaussian blur, kernel size "
            f"{_BLUR_KERNEL_SIZE}) needs images of at least "
            f"{_BLUR_KERNEL_SIZE // 2 + 1} x {_BLUR_KERNEL_SIZE // 2 + 1} "
            f"pixels, got {tuple(inputs.shape[-2:])}. Pass an "
            "insertion_substrate tensor or callable for such small images."
        )


def _blur(images: Tensor) -> Tensor:
    """The default insertion start: RISE's Gaussian blur (kernel 11, sigma 5)."""
    from torchvision.transforms.functional import gaussian_blur

    return gaussian_blur(images, kernel_size=_BLUR_KERNEL_SIZE, sigma=_BLUR_SIGMA)


def _make_substrate(substrate: SubstrateType, inputs: Tensor, name: str) -> Tensor:
    r"""Returns the substrate expanded (without copy) to the shape of inputs."""
    if substrate is None:  # the deletion default; the blur is made per example
        return inputs.new_zeros(()).expand(inputs.shape)
    if callable(substrate) and not isinstance(substrate, Tensor):
        value = substrate(inputs)
    else:
        value = substrate
    if not isinstance(value, Tensor):
        raise TypeError(
            f"{name} must be a tensor or a callable returning a tensor, got "
            f"{type(value).__name__}."
        )
    try:
        value = torch.broadcast_to(value, inputs.shape)
    except RuntimeError:
        raise ValueError(
            f"{name} of shape {tuple(value.shape)} does not broadcast to the "
            f"inputs shape {tuple(inputs.shape)}; pass e.g. a C x 1 x 1 colour, "
            "a 1 x C x H x W image or an N x C x H x W batch."
        ) from None
    value = value.to(device=inputs.device, dtype=inputs.dtype)
    if value.is_floating_point() and not torch.isfinite(value).all():
        raise ValueError(f"{name} contains non-finite values (NaN or inf).")
    return value
