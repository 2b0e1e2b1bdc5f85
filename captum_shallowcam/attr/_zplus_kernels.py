"""The z+ rule's CPU kernels: the work behind :meth:`ZPlusRule.relevance`.

This is the hot loop of the relevance pass. On CPU a fresh large tensor costs
more than the arithmetic on it (page faults), so these helpers work in place on
tensors the rule owns, lay convolutions out channels-last, and handle the few
outputs without a positive contribution pixel by pixel where that is cheaper.
"""

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

#: ``operation(inputs, weight, bias)``: a convolution or a linear map.
WeightedOperation = Callable[[Tensor, Tensor, Tensor | None], Tensor]


def _dense_fallback(
    operation: WeightedOperation,
    source: Tensor,
    negative_weight: Tensor,
    inputs: Tensor,
    weight: Tensor,
    relevance: Tensor,
    eps: Tensor,
    dead: Tensor,
    unpadded_shape: torch.Size,
    pad: Sequence[int] | None,
) -> tuple[list[Tensor], list[Tensor], Tensor | None]:
    """The fall-back of the ``dead`` outputs (no positive contribution) as more
    terms of the rule's one backward pass: outputs and their ratios, and the
    input of the flat term (whose relevance is not multiplied by the input).

    Dead outputs are redistributed by their negative contributions, or, with no
    contribution of either sign (all inputs in the window zero), by w^2 (flat).
    ``negative_weight`` is what ``source`` needs for (a w)^- (see
    :func:`_split_signs`); ``dead`` is consumed.
    """
    z_neg = operation(source, negative_weight, None)
    zn = z_neg.detach()
    flat = dead & (zn >= -eps)
    not_by_negative = dead.logical_not_().logical_or_(flat)
    ratio_neg = torch.div(relevance, zn.sub_(eps), out=zn)
    outputs, ratios = [z_neg], [ratio_neg.masked_fill_(not_by_negative, 0.0)]
    if not bool(flat.any()):
        return outputs, ratios, None
    square = weight * weight
    # sum_i w_ij^2 over the window's real inputs depends on neither the example
    # nor the input values: one example of ones.
    ones = torch.ones(
        (1,) + tuple(unpadded_shape[1:]), dtype=zn.dtype, device=zn.device
    )
    if pad is not None:
        ones = F.pad(ones, tuple(pad))
    flat_ratio = relevance / operation(ones, square, None).clamp_min_(1e-30)
    # The backward of a linear operation does not depend on the input's value:
    # taken at (an alias of) the input itself.
    alias = inputs.detach().requires_grad_(True)
    outputs.append(operation(alias, square, None))
    ratios.append(flat_ratio.masked_fill_(flat.logical_not_(), 0.0))
    return outputs, ratios, alias


def _channels_last(x: Tensor, pad: Sequence[int] | None) -> Tensor:
    """``x`` channels-last, zero-padded by ``pad`` if given, in one copy at most."""
    if pad is None:
        return x.contiguous(memory_format=torch.channels_last)
    if len(pad) > 4:  # padding of the channels or the batch: not worth a fast path
        return F.pad(x, tuple(pad)).contiguous(memory_format=torch.channels_last)
    left, right, top, bottom = (tuple(pad) + (0, 0))[:4]
    n, c, h, w = x.shape
    out = torch.empty(
        (n, c, h + top + bottom, w + left + right),
        dtype=x.dtype,
        device=x.device,
        memory_format=torch.channels_last,
    ).zero_()
    out[:, :, top : top + h, left : left + w] = x
    return out


def _operand_layout(
    inputs: Tensor, weight: Tensor, relevance: Tensor, pad: Sequence[int] | None
) -> tuple[Tensor, Tensor]:
    """The inputs (padded by ``pad``) and the relevance in the layout the
    operation runs fastest in."""
    if inputs.dim() == 4 and weight.dim() == 4:
        # Convolutions (depthwise above all) run faster channels-last on CPU.
        inputs = _channels_last(inputs, pad)
        # Only a channels-first relevance is copied; a view of a
        # channels-last one (cropped by the rule above) is read as it is.
        if relevance.is_contiguous() and relevance.shape[1] > 1:
            relevance = relevance.contiguous(memory_format=torch.channels_last)
    elif pad is not None:
        inputs = F.pad(inputs, tuple(pad))
    return inputs, relevance


def _split_signs(x: Tensor, groups: int) -> Tensor:
    """[x^+, x^-] stacked along the channels of each of the ``groups`` groups."""
    out = _empty_with_channels(x, 2 * x.shape[1])
    halves = _by_group(out, groups)
    x_groups = _by_group(x.detach(), groups)
    per_group = x_groups.shape[2]
    torch.clamp(x_groups, min=0, out=halves[:, :, :per_group])
    torch.clamp(x_groups, max=0, out=halves[:, :, per_group:])
    return out


def _merge_signs(relevance: Tensor, groups: int) -> Tensor:
    """The relevance of [x^+, x^-] (see :func:`_split_signs`) summed onto x."""
    out = _empty_with_channels(relevance, relevance.shape[1] // 2)
    halves = _by_group(relevance, groups)
    per_group = halves.shape[2] // 2
    torch.add(
        halves[:, :, :per_group], halves[:, :, per_group:], out=_by_group(out, groups)
    )
    return out


def _empty_with_channels(like: Tensor, channels: int) -> Tensor:
    """An empty tensor shaped as ``like`` but for its channels (dim 1),
    channels-last when 4-D."""
    memory_format = torch.channels_last if like.dim() == 4 else torch.contiguous_format
    shape = (like.shape[0], channels) + tuple(like.shape[2:])
    return torch.empty(
        shape, dtype=like.dtype, device=like.device, memory_format=memory_format
    )


def _by_group(x: Tensor, groups: int) -> Tensor:
    """A view of ``x`` (N x C x ...) as N x groups x C/groups x ..."""
    return x.view((x.shape[0], groups, x.shape[1] // groups) + tuple(x.shape[2:]))


def _at_pixels(t: Tensor, pixels: tuple[Tensor, ...]) -> Tensor:
    """The channel vectors of ``t`` at ``pixels`` (count x channels), a copy."""
    return t.movedim(1, -1)[pixels]


class _FewDeadPixels:
    """The dead outputs of a pointwise convolution (1x1, stride 1, no padding)
    when they sit at few pixels: their fall-back is computed from their
    contributions written out, not by passes over whole tensors (a linear
    bottleneck's 1x1 conv has a handful among millions of outputs)."""

    def __init__(self, pixels, dead, relevance, eps) -> None:  # noqa: ANN001
        self.pixels = pixels  # indices (example, position...) of the pixels
        self.dead = dead  # count x out: dead outputs with relevance
        self.relevance = relevance  # count x out
        self.eps = eps  # count x 1

    @classmethod
    def find(
        cls,
        dead: Tensor,
        eps: Tensor,
        relevance: Tensor,
        inputs: Tensor,
        weight: Tensor,
    ) -> "_FewDeadPixels | None":
        """The pixels of the ``dead`` outputs, or None when the operation is not
        a pointwise convolution or they are too many."""
        pointwise = dead.dim() > 2 and all(k == 1 for k in weight.shape[2:])
        if not (pointwise and dead.shape[2:] == inputs.shape[2:]):
            return None
        candidates = dead.any(1)  # over the channels: contiguous for channels-last
        count = int(candidates.sum())
        # All contributions of a pixel are out x in-per-group numbers: cheap while
        # that stays well below one pass over the output.
        if count * weight.shape[0] * weight.shape[1] > dead.numel() // 8:
            return None
        pixels = candidates.nonzero(as_tuple=True)
        eps_at = eps.reshape(-1)[pixels[0]].unsqueeze(1)
        return cls(
            pixels, _at_pixels(dead, pixels), _at_pixels(relevance, pixels), eps_at
        )

    def zero_ratio(self, ratio: Tensor) -> None:
        """Sets R / z+ to 0 at the dead outputs, in place."""
        at = _at_pixels(ratio, self.pixels).masked_fill_(self.dead, 0.0)
        ratio.movedim(1, -1).index_put_(self.pixels, at)

    def add_relevance(
        self, result: Tensor, inputs: Tensor, weight: Tensor, groups: int
    ) -> None:
        """Adds the fall-back's relevance (negative contributions, else flat)
        of the dead outputs to ``result`` (shaped as ``inputs``), in place."""
        c_out, per_group = weight.shape[:2]
        count = self.pixels[0].numel()
        a = _at_pixels(inputs, self.pixels).view(count, groups, 1, per_group)
        w = weight.reshape(groups, c_out // groups, per_group)
        negative = (a * w).clamp_(max=0)  # count x groups x out/group x in/group
        z_neg = negative.sum(-1).view(count, c_out)
        flat = self.dead & (z_neg >= -self.eps)
        s_neg = torch.where(self.dead & ~flat, self.relevance / (z_neg - self.eps), 0.0)
        r_in = (negative * s_neg.view(count, groups, -1, 1)).sum(2)
        square = w * w
        share = square / square.sum(-1, keepdim=True).clamp_min(1e-30)
        r_flat = torch.where(flat, self.relevance, 0.0).view(count, groups, -1, 1)
        r_in += (share * r_flat).sum(2)
        result.movedim(1, -1).index_put_(
            self.pixels, r_in.view(count, -1), accumulate=True
        )


def _crop(x: Tensor, pad: Sequence[int]) -> Tensor:
    """The inverse of ``F.pad(x, pad)`` for non-negative ``pad``, as a view."""
    for i in range(len(pad) // 2):
        dim = x.dim() - 1 - i
        before, after = pad[2 * i], pad[2 * i + 1]
        x = x.narrow(dim, before, x.shape[dim] - before - after)
    return x


def per_example_extremes(z: Tensor) -> tuple[Tensor, Tensor]:
    """min and max over all but the first dimension, shaped to broadcast
    against z (two reductions: on CPU ``torch.aminmax`` over a dimension is
    several times slower than ``amin`` and ``amax`` together)."""
    if z.dim() > 2 and not z.is_contiguous():
        # A channels-last tensor is contiguous with the channels moved last:
        # viewed so, it needs no copy.
        z = z.movedim(1, -1)
    flat = z.reshape(z.shape[0], -1)
    shape = (-1,) + (1,) * (z.dim() - 1)
    return flat.amin(1).view(shape), flat.amax(1).view(shape)
