"""Deletion / insertion metric for image attribution maps.

Implements the causal deletion and insertion game of RISE (Petsiuk, Das and
Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box Models",
BMVC 2018, https://arxiv.org/abs/1806.07421) in the style of
:mod:`captum.metrics`. The function is an orchestrator over three reusable
parts: the pixel ranking (:mod:`._ranking`), the substrates
(:mod:`._substrates`) and the chunked scorer of perturbed images
(:mod:`._perturbation`); input checks live in :mod:`captum_shallowcam._validation`,
shared with the layer methods.
"""

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from captum.log import log_usage
from torch import Tensor

from captum_shallowcam._captum_compat import (
    TargetType,
    _format_additional_forward_args,
)
from captum_shallowcam._forward import check_additional_forward_args, run_forward
from captum_shallowcam._model_state import buffers_preserved
from captum_shallowcam._validation import (
    check_image_batch,
    check_positive_int,
    check_target_range,
    format_target,
)
from captum_shallowcam.metrics._perturbation import (
    ExampleGames,
    Game,
    checked_scores,
    forward_context,
    score_games,
    target_score,
)
from captum_shallowcam.metrics._ranking import pixel_attributions, pixel_ranks
from captum_shallowcam.metrics._substrates import (
    GaussianBlur,
    RiseBlur,
    SubstrateType,
    make_substrate,
)

__all__ = ["DeletionInsertionResult", "deletion_insertion"]

_DEFAULT_MAX_EXAMPLES_PER_BATCH = 32
#: The default insertion substrate: kernel 11, sigma 5, as in RISE's paper
#: (RISE's own code blurs differently: see ``RiseBlur`` and ``--protocol rise``).
_DEFAULT_BLUR = GaussianBlur(kernel_size=11, sigma=5.0)


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
    attributions: Tensor | Sequence[Tensor],
    target: TargetType = None,
    additional_forward_args: Any = None,
    step: int = 224,
    deletion_substrate: SubstrateType = None,
    insertion_substrate: SubstrateType = None,
    score_func: Callable[[Tensor, Tensor], Tensor] | None = None,
    max_examples_per_batch: int | None = None,
    show_progress: bool = False,
    autocast_dtype: torch.dtype | None = None,
) -> DeletionInsertionResult | list[DeletionInsertionResult]:
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

        attributions (Tensor or list of Tensor): Attribution maps for
                `inputs`, or a list of them (for example the list that
                ``attribute`` returns for a list of layers): then a list of
                results is returned, one per map, in the same order. Each
                map is one of:

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
                gaussian_blur(inputs, kernel_size=11, sigma=5)`` (reflection
                padding; ``GaussianBlur()``), which needs H and W of at
                least 6. RISE's own blur is ``RiseBlur()``; the presets of
                :mod:`captum_shallowcam.metrics.protocols` name both.

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

        show_progress (bool, optional): Shows a progress bar (tqdm, through
                Captum's progress helper, as Captum's perturbation methods
                do) over the perturbed images.

                Default: False

        autocast_dtype (torch.dtype, optional): If given (e.g.
                ``torch.bfloat16``), the metric's own forward passes run
                under ``torch.autocast`` with that dtype on the inputs'
                device; the perturbed images are still built in the inputs'
                dtype, the default score is a float32 softmax, and the
                attributions (computed before) are not affected. Faster on
                GPUs; it changes AUCs slightly (docs/scale.rst gives the
                measured change).

                Default: None

    Returns:

        result (DeletionInsertionResult or list): A named tuple with fields
            (a list of them when `attributions` is a list)

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
    if isinstance(attributions, (list, tuple)):
        # One result per map: the list that a multi-layer ``attribute`` returns.
        rest = (
            target, additional_forward_args, step, deletion_substrate,
            insertion_substrate, score_func, max_examples_per_batch, show_progress,
            autocast_dtype,
        )  # fmt: skip
        return [
            deletion_insertion(forward_func, inputs, m, *rest) for m in attributions
        ]
    check_image_batch(inputs)
    max_examples_per_batch = _checked_sizes(step, max_examples_per_batch)
    score_func = target_score if score_func is None else score_func
    n, _, height, width = inputs.shape
    # A train-mode model's BatchNorm statistics are put back afterwards.
    with torch.no_grad(), buffers_preserved(forward_func):
        pixel_attr = pixel_attributions(attributions, inputs)
        target_tensor = format_target(target, n, inputs.device)
        forward = _forward_on_examples(
            forward_func, additional_forward_args, n, autocast_dtype
        )
        games = _deletion_insertion_games(
            inputs, pixel_attr, deletion_substrate, insertion_substrate, step
        )
        # The unperturbed inputs resolve and check the targets, and give the
        # first deletion point and the last insertion point.
        target_tensor, clean_scores = _score_unperturbed(
            forward, score_func, inputs, target_tensor, max_examples_per_batch
        )

        def score(outputs: Tensor, examples: Tensor) -> Tensor:
            targets = target_tensor.index_select(0, examples.to(target_tensor.device))
            return _finite_scores(score_func, outputs, targets)

        n_points = games.counts.shape[0]
        # curves[0] = deletion, curves[1] = insertion.
        curves = torch.empty(
            (2, n, n_points), dtype=games.fractions.dtype, device=inputs.device
        )
        curves[0, :, 0] = clean_scores
        curves[1, :, -1] = clean_scores
        # Deletion needs points 1 .. S-1, insertion 0 .. S-2: the remaining
        # point of each is the unperturbed input, scored above.
        spans = [((1, n_points), (0, n_points - 1))] * n
        score_games(
            forward, score, games.prepare, spans, games.counts, curves,
            max_examples_per_batch, show_progress=show_progress,
        )  # fmt: skip
        _check_curves(curves, games.counts, deletion_substrate, insertion_substrate)
        return _result(curves, games.fractions)


def _checked_sizes(step: int, max_examples_per_batch: int | None) -> int:
    """Refuses a step or batch size that is not a positive int; returns the
    batch size (None: the default, 32)."""
    check_positive_int(step, "step", "a positive number of pixels per step")
    if max_examples_per_batch is None:
        max_examples_per_batch = _DEFAULT_MAX_EXAMPLES_PER_BATCH
    check_positive_int(
        max_examples_per_batch,
        "max_examples_per_batch",
        "a positive number of images per forward call, or None for 32",
    )
    return max_examples_per_batch


def _score_unperturbed(
    forward: Callable[[Tensor, Tensor], Tensor],
    score_func: Callable[[Tensor, Tensor], Tensor],
    inputs: Tensor,
    target_tensor: Tensor | None,
    max_examples_per_batch: int,
) -> tuple[Tensor, Tensor]:
    """``(targets, scores)`` of the unperturbed inputs: None targets become the
    predicted classes, given ones are checked against the outputs."""
    n = inputs.shape[0]
    outputs = torch.cat(
        [
            forward(
                inputs[lo : lo + max_examples_per_batch],
                torch.arange(lo, min(lo + max_examples_per_batch, n)),
            )
            for lo in range(0, n, max_examples_per_batch)
        ]
    )
    if target_tensor is None:
        target_tensor = outputs.argmax(dim=1)
    else:
        target_tensor = target_tensor.to(outputs.device)
        check_target_range(target_tensor, outputs.shape[1])
    if not torch.isfinite(outputs).all():
        example = int((~torch.isfinite(outputs)).any(1).nonzero()[0])
        raise ValueError(
            f"forward_func returned NaN or inf for the unperturbed example "
            f"{example}, so its curves would be NaN. Check the model on it."
        )
    return target_tensor, _finite_scores(score_func, outputs, target_tensor)


def _result(curves: Tensor, fractions: Tensor) -> DeletionInsertionResult:
    """The AUCs (trapezoid rule over the fractions) and the overall score."""
    deletion_auc = torch.trapezoid(curves[0], x=fractions, dim=-1)
    insertion_auc = torch.trapezoid(curves[1], x=fractions, dim=-1)
    return DeletionInsertionResult(
        deletion_auc=deletion_auc,
        insertion_auc=insertion_auc,
        overall=100 * (insertion_auc - deletion_auc),
        deletion_curve=curves[0],
        insertion_curve=curves[1],
        fractions=fractions,
    )


def _finite_scores(
    score_func: Callable[[Tensor, Tensor], Tensor], outputs: Tensor, targets: Tensor
) -> Tensor:
    """The scores; a ValueError where score_func makes NaN or inf of finite
    outputs (non-finite outputs are reported with their game by _check_curves)."""
    scores = checked_scores(score_func, outputs, targets)
    bad = ~torch.isfinite(scores)
    if bad.any() and torch.isfinite(outputs[bad]).all():
        raise ValueError(
            "score_func returned NaN or inf for finite model outputs, so the AUCs "
            "would be NaN. Make it return finite scores (the default is the "
            "target's softmax probability)."
        )
    return scores


def _check_curves(
    curves: Tensor,
    counts: Tensor,
    deletion_substrate: SubstrateType,
    insertion_substrate: SubstrateType,
) -> None:
    """A ValueError naming the substrate where the model gave NaN or inf."""
    bad = ~torch.isfinite(curves)
    if not bad.any():
        return
    game, example, point = (int(i) for i in bad.nonzero()[0])
    kind = ("deletion", "insertion")[game]
    substrate = (deletion_substrate, insertion_substrate)[game]
    if substrate is None:
        substrate = "zeros, the default" if game == 0 else repr(_DEFAULT_BLUR)
    elif isinstance(substrate, Tensor):
        substrate = f"a tensor of shape {tuple(substrate.shape)}"
    else:
        substrate = repr(substrate)
    perturbed = int(counts[point])
    raise ValueError(
        f"forward_func returned NaN or inf on example {example} at the {kind} "
        f"point with {perturbed} pixels perturbed, an image made from the {kind} "
        f"substrate ({substrate}), so its {kind} AUC would be NaN. A model "
        "that normalises each image by its own statistics divides by 0 on a "
        f"constant image: pass another {kind}_substrate (e.g. a blur, or the "
        "inputs' mean colour) or make the model finite on it."
    )


def _forward_on_examples(
    forward_func: Callable[..., Tensor],
    additional_forward_args: Any,
    n: int,
    autocast_dtype: torch.dtype | None,
) -> Callable[[Tensor, Tensor], Tensor]:
    r"""``(batch, example of each row) -> outputs``, with each row's extra
    arguments, under the metric's forward context."""
    additional_forward_args = _format_additional_forward_args(additional_forward_args)
    check_additional_forward_args(additional_forward_args, n)

    def forward(batch: Tensor, examples: Tensor) -> Tensor:
        with forward_context(autocast_dtype, batch.device):
            return run_forward(forward_func, batch, additional_forward_args, examples)

    return forward


class _Games(NamedTuple):
    prepare: Callable[[int], ExampleGames]
    counts: Tensor
    fractions: Tensor


def _deletion_insertion_games(
    inputs: Tensor,
    pixel_attr: Tensor,
    deletion_substrate: SubstrateType,
    insertion_substrate: SubstrateType,
    step: int,
) -> _Games:
    r"""The two games per example, and the curve points they share.

    Point ``k`` perturbs ``counts[k] = min(k * step, H * W)`` pixels, a
    fraction ``counts[k] / (H * W)`` of the image.
    """
    n_pixels = inputs.shape[-2] * inputs.shape[-1]
    if insertion_substrate is None:
        insertion_substrate = _DEFAULT_BLUR
    del_sub = make_substrate(deletion_substrate, inputs, "deletion_substrate")
    # The package's blurs are applied example by example, as the chunks need
    # them, so memory is bounded by max_examples_per_batch, not by N.
    if isinstance(insertion_substrate, (GaussianBlur, RiseBlur)):
        insertion_substrate.check_size(inputs)
        blur, ins_sub = insertion_substrate, None
    else:
        blur = None
        ins_sub = make_substrate(insertion_substrate, inputs, "insertion_substrate")

    def prepare(example: int) -> ExampleGames:
        original = inputs[example : example + 1]
        start = blur(original) if blur is not None else ins_sub[example : example + 1]
        return ExampleGames(
            pixel_ranks(pixel_attr[example]),
            (
                Game(original, del_sub[example : example + 1]),
                Game(start, original),
            ),
        )

    n_points = math.ceil(n_pixels / step) + 1
    counts = torch.clamp(
        torch.arange(n_points, device=inputs.device) * step, max=n_pixels
    )
    dtype = inputs.dtype if inputs.is_floating_point() else torch.get_default_dtype()
    return _Games(prepare, counts, counts.to(dtype) / n_pixels)
