"""Pixel ranking for perturbation metrics: which pixel is perturbed when.

A perturbation metric turns an attribution map into an order of pixels and
perturbs the top ``k`` of that order. :func:`pixel_attributions` brings the
three accepted map shapes to one value per pixel; :func:`pixel_ranks` gives
each pixel its position in the (stable, descending) order, so that "the top
``k`` pixels" is the boolean mask ``rank < k``.
"""

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["pixel_attributions", "pixel_ranks"]


def pixel_attributions(attributions: Tensor, inputs: Tensor) -> Tensor:
    r"""The N x (H * W) pixel attributions of `attributions` for `inputs`.

    Accepts N x 1 x h x w layer maps (upsampled bilinearly to H x W,
    ``align_corners=False``, as ``LayerAttribution.interpolate`` does),
    N x C x H x W input-shaped maps (summed over channels) and N x H x W pixel
    maps (used as they are). Raises with the accepted shapes otherwise.
    """
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
        if not _same_grid(shape[2], shape[3], height, width):
            raise ValueError(
                f"attributions of shape {shape} cannot be maps of inputs of shape "
                f"{tuple(inputs.shape)}: an h x w = {shape[2]} x {shape[3]} grid "
                f"has another aspect ratio than the H x W = {height} x {width} "
                "image, so it cannot cover it with one stride (a channels-last or "
                "token layer taken as N x K x h x w? Pass LayerCam a "
                "reshape_transform). Pass maps of the layer's spatial grid."
            )
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


def _same_grid(h: int, w: int, height: int, width: int) -> bool:
    """Whether an h x w map can be the grid of an H x W image: some one stride
    gives both sizes, give or take one cell of rounding or padding."""

    def strides(cells: int, pixels: int) -> tuple[float, float]:
        return pixels / (cells + 1), pixels / (cells - 1) if cells > 1 else float("inf")

    (low_h, high_h), (low_w, high_w) = strides(h, height), strides(w, width)
    return max(low_h, low_w) <= min(high_h, high_w)


def pixel_ranks(pixel_attr: Tensor) -> Tensor:
    r"""``rank[..., p]``: the position of pixel ``p`` in decreasing attribution.

    The order is a stable sort of the row-major flattened map, so ties go to
    the top-left pixel first, the same for every method. The top ``k`` pixels
    are ``rank < k``.
    """
    order = torch.argsort(pixel_attr, dim=-1, descending=True, stable=True)
    rank = torch.empty_like(order)
    positions = torch.arange(order.shape[-1], device=order.device)
    rank.scatter_(-1, order, positions.expand_as(order))
    return rank
