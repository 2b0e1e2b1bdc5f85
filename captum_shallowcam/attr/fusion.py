"""One fine map from the maps of several layers."""

from collections.abc import Sequence
from typing import Literal

import torch
from captum.attr import LayerAttribution
from torch import Tensor

from captum_shallowcam.attr._base import unit_range

FusionMode = Literal["product", "max", "mean"]


def fuse_layer_maps(
    layer_maps: Sequence[Tensor],
    size: tuple[int, int] | None = None,
    mode: FusionMode = "product",
    interpolate_mode: str = "bilinear",
) -> Tensor:
    r"""
    Fuses per-layer class activation maps into one map. Each map is brought to
    ``size`` with :meth:`captum.attr.LayerAttribution.interpolate`, scaled per
    example to [0, 1] (:math:`\hat L_l = (L_l - \min L_l) / (\max L_l - \min
    L_l)`), and the scaled maps are combined position by position:

    .. math::
        \text{product:}\ \prod_l \hat L_l, \qquad
        \text{max:}\ \max_l \hat L_l, \qquad
        \text{mean:}\ \tfrac{1}{n} \sum_l \hat L_l

    The product is RefineCAM's fusion (a position must be marked at every
    layer, so the deep layers' localisation masks the shallow layers' detail);
    the maximum is LayerCAM's (Jiang et al., IEEE TIP 2021,
    https://doi.org/10.1109/TIP.2021.3089943, whose code applies it after its
    tanh scaling of shallow maps, ``LayerCam(...).attribute(...,
    scaling="tanh")``); the mean is the plain average.

    Args:

        layer_maps (list[Tensor]): Maps of the same examples, each N x 1 x h x w
                    (the list a multi-layer ``attribute`` returns); they may have
                    different spatial sizes.
        size (tuple[int, int], optional): Output height and width. Default: the
                    largest map's size; pass the input's size to fuse at pixel
                    resolution.
        mode (str, optional): ``"product"``, ``"max"`` or ``"mean"``.
                    Default: ``"product"``
        interpolate_mode (str, optional): Passed to ``LayerAttribution.interpolate``.
                    Default: ``"bilinear"``

    Returns:
        *Tensor* of shape N x 1 x size, values in [0, 1].

    Examples::

        >>> layers = [net.layer1, net.layer2, net.layer3, net.layer4]
        >>> maps = LayerShallowCam(net, layers).attribute(x, target=3)
        >>> fused = fuse_layer_maps(maps, size=x.shape[-2:])
    """
    if mode not in ("product", "max", "mean"):
        raise ValueError(f"mode must be 'product', 'max' or 'mean'; got {mode!r}.")
    if isinstance(layer_maps, Tensor) or not layer_maps:
        raise TypeError(
            "layer_maps must be a non-empty list of N x 1 x h x w maps (the list a "
            "multi-layer attribute call returns); for one map there is nothing to fuse."
        )
    for layer_map in layer_maps:
        if (
            not isinstance(layer_map, Tensor)
            or layer_map.dim() != 4
            or layer_map.shape[1] != 1
        ):
            shape = (
                tuple(layer_map.shape)
                if isinstance(layer_map, Tensor)
                else type(layer_map)
            )
            raise ValueError(
                f"Each map must be a tensor of shape N x 1 x h x w; got {shape}. Sum "
                "per-channel maps over dim 1 first."
            )
    for index, layer_map in enumerate(layer_maps):
        if not torch.isfinite(layer_map).all():
            raise ValueError(
                f"Map {index} of layer_maps (shape {tuple(layer_map.shape)}) holds "
                "NaN or inf values, so the fused map would too. Fix the map (e.g. "
                "torch.nan_to_num) or leave it out."
            )
    if len({m.shape[0] for m in layer_maps}) != 1:
        raise ValueError(
            "The maps hold different numbers of examples; fuse maps of one batch."
        )
    if size is None:
        size = max((tuple(m.shape[-2:]) for m in layer_maps), key=lambda s: s[0] * s[1])
    scaled = [
        unit_range(
            LayerAttribution.interpolate(m.detach(), tuple(size), interpolate_mode)
        )
        for m in layer_maps
    ]
    stacked = torch.stack(scaled)
    if mode == "product":
        return stacked.prod(0)
    if mode == "max":
        return stacked.amax(0)
    return stacked.mean(0)
