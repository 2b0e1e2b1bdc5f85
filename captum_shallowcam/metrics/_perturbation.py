r"""A chunked scorer of perturbed images, shared by perturbation metrics.

A perturbation metric plays one or more *games* per example: game ``g`` of
example ``e`` starts from image ``start`` and moves towards image ``end``,
pixel by pixel in the order of :func:`~._ranking.pixel_ranks`; its point ``k``
is ``where(rank < counts[k], end, start)``. :func:`score_games` builds those
images in chunks of at most ``max_examples_per_batch`` (images of several
points, games and examples share a chunk, so the forward batches stay full),
runs the model on each chunk on the inputs' device and scores the outputs.
Memory does not grow with the number of points or examples.

Deletion is the game (input -> deletion substrate), insertion the game
(insertion substrate -> input); a metric that perturbs in another order or
with other substrates only supplies other games.
"""

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from captum_shallowcam._captum_compat import progress

__all__ = [
    "Game",
    "ExampleGames",
    "score_games",
    "target_score",
]


class Game(NamedTuple):
    r"""One game of one example: its 1 x C x H x W ``start`` and ``end`` images."""

    start: Tensor
    end: Tensor


class ExampleGames(NamedTuple):
    r"""An example's pixel ranks (H * W) and its games."""

    rank: Tensor
    games: Sequence[Game]


def forward_context(autocast_dtype: torch.dtype | None, device: torch.device):
    r"""The context of the metric's forward passes (autocast when asked).

    Only the metric's own forwards run under it: the attributions given to the
    metric were computed before, in the precision the caller chose.
    """
    if autocast_dtype is None:
        return contextlib.nullcontext()
    if autocast_dtype not in (torch.bfloat16, torch.float16):
        raise ValueError(
            f"autocast_dtype must be torch.bfloat16 or torch.float16 (or None for "
            f"full precision), got {autocast_dtype}."
        )
    return torch.autocast(device_type=device.type, dtype=autocast_dtype)


def target_score(outputs: Tensor, targets: Tensor) -> Tensor:
    r"""Softmax probability of the target class (computed in float32 or wider)."""
    if outputs.dtype in (torch.float16, torch.bfloat16):
        outputs = outputs.float()
    return torch.softmax(outputs, dim=1).gather(1, targets.unsqueeze(1)).squeeze(1)


def checked_scores(
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


def _chunks(
    spans: Sequence[Sequence[tuple[int, int]]], max_batch: int
) -> Iterator[list[tuple[int, int, int, int]]]:
    r"""Runs ``(example, game, lo, hi)`` in chunks of at most `max_batch` images.

    ``spans[e][g] = (lo, hi)`` are the points of game ``g`` of example ``e``.
    Every chunk but the last holds exactly `max_batch` images.
    """
    chunk: list[tuple[int, int, int, int]] = []
    room = max_batch
    for example, games in enumerate(spans):
        for game, (lo, hi) in enumerate(games):
            while lo < hi:
                take = min(room, hi - lo)
                chunk.append((example, game, lo, lo + take))
                lo += take
                room -= take
                if room == 0:
                    yield chunk
                    chunk = []
                    room = max_batch
    if chunk:
        yield chunk


def score_games(
    forward: Callable[[Tensor, Tensor], Tensor],
    score: Callable[[Tensor, Tensor], Tensor],
    prepare: Callable[[int], ExampleGames],
    spans: Sequence[Sequence[tuple[int, int]]],
    counts: Tensor,
    curves: Tensor,
    max_batch: int,
    show_progress: bool = False,
) -> Tensor:
    r"""Scores every game point and writes it into ``curves[game, example, k]``.

    Args:
        forward: ``(batch, example of each row) -> outputs``.
        score: ``(outputs, example of each row) -> one score per row``.
        prepare: ``example -> ExampleGames``; called when an example's first
            chunk is built, and its result dropped after its last, so at most
            the examples of one chunk are held.
        spans: ``spans[e][g] = (lo, hi)``, the points of each game, known
            before any example is prepared.
        counts: Number of pixels perturbed at each point (S).
        curves: G x N x S output tensor.
        max_batch: Images per forward call.
        show_progress: Shows a progress bar over the images (Captum's tqdm
            helper, as Captum's perturbation methods do).
    """
    bar = None
    if show_progress:
        total = sum(hi - lo for games in spans for lo, hi in games)
        bar = progress(desc="deletion_insertion", total=total, unit="image")
    try:
        _score_chunks(forward, score, prepare, spans, counts, curves, max_batch, bar)
    finally:
        if bar is not None:
            bar.close()
    return curves


def _score_chunks(
    forward: Callable[[Tensor, Tensor], Tensor],
    score: Callable[[Tensor, Tensor], Tensor],
    prepare: Callable[[int], ExampleGames],
    spans: Sequence[Sequence[tuple[int, int]]],
    counts: Tensor,
    curves: Tensor,
    max_batch: int,
    bar: Any,
) -> None:
    prepared: dict[int, ExampleGames] = {}
    for chunk in _chunks(spans, max_batch):
        for done in [e for e in prepared if e < chunk[0][0]]:
            del prepared[done]
        for example, _, _, _ in chunk:
            if example not in prepared:
                prepared[example] = prepare(example)
        size = sum(hi - lo for _, _, lo, hi in chunk)
        first = prepared[chunk[0][0]].games[chunk[0][1]].start
        batch = torch.empty(
            (size, *first.shape[1:]), dtype=first.dtype, device=first.device
        )
        row = 0
        height, width = first.shape[-2:]
        for example, game, lo, hi in chunk:
            rank, games = prepared[example]
            start, end = games[game].start, games[game].end
            mask = rank < counts[lo:hi, None]
            torch.where(
                mask.view(hi - lo, 1, height, width),
                end,
                start,
                out=batch[row : row + hi - lo],
            )
            row += hi - lo
        examples = torch.cat(
            [torch.full((hi - lo,), e, dtype=torch.long) for e, _, lo, hi in chunk]
        )
        scores = score(forward(batch, examples), examples)
        row = 0
        for example, game, lo, hi in chunk:
            curves[game, example, lo:hi] = scores[row : row + hi - lo]
            row += hi - lo
        del batch, scores
        if bar is not None:
            bar.update(size)
