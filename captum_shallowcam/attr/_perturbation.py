r"""Batched extra forward passes shared by the perturbation CAM methods.

Score-CAM, Ablation-CAM, Group-CAM and Integrated Grad-CAM each run the model
on many variants of every example (one per channel, group or path step). They
call those variants *rows*: row ``r`` belongs to example ``examples[r]`` and is
built only when its chunk of at most ``max_examples_per_batch`` rows is run, so
memory does not grow with the number of channels, groups or steps.

:func:`untouched_model` is the lifecycle of those forwards, the same one the
engine keeps for the first pass (:mod:`captum_shallowcam._model_state`): the
model is held for the call, buffers that train-mode forwards update are put
back, and hooks registered inside the block are removed when it ends, also
when it raises.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from captum_shallowcam._captum_compat import (
    _format_additional_forward_args,
    progress,
)
from captum_shallowcam._forward import (
    check_additional_forward_args,
    run_forward,
    select_rows,
)
from captum_shallowcam._model_state import (
    buffers_preserved,
    eager,
    exclusive,
    original_module,
)

__all__ = [
    "RowBuilder",
    "check_batch_size",
    "chunks",
    "format_forward_args",
    "progress_bar",
    "score_rows",
    "select_rows",
    "single_image_batch",
    "untouched_model",
]

#: ``(lo, hi) -> (batch of rows lo..hi-1, example of each row)``
RowBuilder = Callable[[int, int], tuple[Tensor, Tensor]]


def single_image_batch(inputs: Any, method: str) -> Tensor:
    r"""The inputs as one N x C x H x W tensor (perturbation methods mask or
    scale the image, so a tuple of inputs has no single meaning)."""
    if isinstance(inputs, tuple):
        if len(inputs) != 1:
            raise TypeError(
                f"{method} perturbs the input image, so it takes one input tensor "
                f"(N x C x H x W), got a tuple of {len(inputs)}. Pass the other "
                "inputs as additional_forward_args."
            )
        inputs = inputs[0]
    if not isinstance(inputs, Tensor):  # the TypeError every method gives
        raise TypeError(
            f"inputs must be a tensor or a tuple of tensors, got {type(inputs).__name__}."
        )
    if inputs.dim() != 4:
        raise ValueError(
            f"{method} needs images of shape N x C x H x W, got {tuple(inputs.shape)}."
        )
    return inputs


def format_forward_args(additional_forward_args: Any, n: int) -> tuple | None:
    r"""``additional_forward_args`` as a tuple, checked to have one row per example."""
    args = _format_additional_forward_args(additional_forward_args)
    check_additional_forward_args(args, n)
    return args


def check_batch_size(max_examples_per_batch: int) -> int:
    if isinstance(max_examples_per_batch, bool) or not isinstance(
        max_examples_per_batch, int
    ):
        raise TypeError(
            "max_examples_per_batch must be a positive int, got "
            f"{type(max_examples_per_batch).__name__}."
        )
    if max_examples_per_batch < 1:
        raise ValueError(
            f"max_examples_per_batch must be at least 1, got {max_examples_per_batch}."
        )
    return max_examples_per_batch


def chunks(total: int, size: int) -> Iterator[tuple[int, int]]:
    r"""``(lo, hi)`` spans of at most ``size`` rows covering ``range(total)``."""
    for lo in range(0, total, size):
        yield lo, min(total, lo + size)


@contextmanager
def progress_bar(show: bool, desc: str, total: int) -> Iterator[Callable[[int], None]]:
    r"""Yields ``update(rows)``: Captum's tqdm helper when ``show``, else a no-op."""
    if not show:
        yield lambda _rows: None
        return
    bar = progress(desc=desc, total=total, unit="image")
    try:
        yield bar.update
    finally:
        bar.close()


@contextmanager
def untouched_model(forward_func: Callable) -> Iterator[nn.Module | None]:
    r"""The lifecycle of the extra forwards; yields the model (None for a
    function). Hooks that the block registers must be removed by it in
    ``finally``; buffers are put back here."""
    forward_func = original_module(forward_func)
    model = forward_func if isinstance(forward_func, nn.Module) else None
    with exclusive(model), torch.inference_mode(False), eager(model):
        with buffers_preserved(forward_func), torch.no_grad():
            yield model


def score_rows(
    forward_func: Callable,
    total: int,
    build: RowBuilder,
    targets: Tensor,
    additional_forward_args: tuple | None,
    max_examples_per_batch: int,
    show_progress: bool,
    desc: str,
    softmax: bool,
) -> Tensor:
    r"""The target score of every row: ``softmax(f(row))[c]`` or the logit
    ``f(row)[c]``, with ``c`` the target of the row's example. Runs under
    ``torch.no_grad()``; call it inside :func:`untouched_model`.

    Returns a float tensor of ``total`` scores on the targets' device.
    """
    # The module a torch.compile'd model wraps: hooks added for these rows
    # (Ablation-CAM's) are not seen by the compiled graph.
    forward_func = original_module(forward_func)
    scores = torch.empty(total, device=targets.device)
    with progress_bar(show_progress, desc, total) as update:
        for lo, hi in chunks(total, max_examples_per_batch):
            batch, examples = build(lo, hi)
            output = run_forward(
                forward_func,
                batch,
                additional_forward_args,
                examples,
            )
            if output.dtype in (torch.float16, torch.bfloat16):
                output = output.float()
            if softmax:
                output = torch.softmax(output, dim=1)
            row_targets = targets.index_select(0, examples.to(targets.device))
            scores[lo:hi] = output.gather(1, row_targets[:, None].to(output.device))[
                :, 0
            ].to(scores)
            update(hi - lo)
    return scores
