"""LayerCAM (Jiang et al., IEEE TIP 2021) as a Captum layer attribution."""

from collections.abc import Callable
from typing import Any, Literal

import torch
from captum.log import log_usage
from torch import Tensor

from captum_shallowcam._captum_compat import TargetType
from captum_shallowcam.attr._base import (
    LayerOrLayers,
    MaskKind,
    _LayerCamBase,
    channel_sum,
    resolve_mask,
    spatial_mask,
)


class LayerCam(_LayerCamBase):
    r"""
    LayerCAM weights every position of every channel of a layer's activation by
    the positive part of the gradient there, then sums over channels:

    .. math::
        L^c = \mathrm{ReLU}\Big(\sum_k \mathrm{ReLU}(G^c_k) \odot A_k\Big),
        \qquad G^c = \frac{\partial y^c}{\partial A}

    On layers whose activations can be negative (linear bottlenecks, residual
    sums before an activation) two other masks are offered. ``mask="sign-aware"``
    (or ``relu_activations=True``),
    :math:`\mathrm{ReLU}(G^c_k) \odot \mathrm{ReLU}(A_k)`: a negative activation
    under a positive gradient counts as no evidence instead of evidence against
    the class. ``mask="both-signs"``, :math:`\mathrm{ReLU}(G^c_k \odot A_k)`: a
    position counts wherever its activation pushes the class score up to first
    order, so a negative activation under a negative gradient is evidence too.
    Where the activations are non-negative (ReLU outputs, the setting of the
    LayerCAM paper) all three are equal. The default is the published formula.

    Unlike Grad-CAM, whose channel weights are spatial averages of the gradient,
    the per-position weights keep fine detail at shallow layers. Details in
    Jiang et al., "LayerCAM: Exploring Hierarchical Class Activation Maps for
    Localization", IEEE TIP 2021, https://doi.org/10.1109/TIP.2021.3089943

    The map has the layer's spatial size (N x 1 x h x w); use
    :meth:`captum.attr.LayerAttribution.interpolate` to bring it to the input's.
    The gradient backward stops at the layer and fills no parameter ``.grad``.
    """

    def __init__(
        self,
        forward_func: Callable,
        layer: LayerOrLayers,
        device_ids: list[int] | None = None,
        reshape_transform: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        r"""
        Args:

            forward_func (Callable): The forward function of the model or any
                        modification of it.
            layer (torch.nn.Module or list[torch.nn.Module]): Layer (or layers)
                        for which attributions are computed. Each must be called
                        once per forward pass and produce a 4-D feature map
                        N x K x h x w (or one that ``reshape_transform`` brings to
                        it). With a list, ``attribute`` returns a list.
            device_ids (list[int]): Kept for compatibility with Captum's layer
                        methods; DataParallel models are not supported (pass
                        ``model.module``).
            reshape_transform (Callable, optional): Applied to each layer's
                        activation and to its gradient, to bring them to
                        N x K x h x w, as in pytorch-grad-cam: for a
                        channels-last layer (Swin, ConvNeXt blocks)
                        ``lambda t: t.permute(0, 3, 1, 2)``; for ViT tokens
                        N x (1 + h w) x K
                        ``lambda t: t[:, 1:].unflatten(1, (h, w)).permute(0, 3, 1, 2)``.
                        The map has the transformed h x w. It gets detached
                        tensors and must keep N first. Default: None, the
                        layer's tensor as it is.
        """
        super().__init__(forward_func, layer, device_ids)
        if reshape_transform is not None and not callable(reshape_transform):
            raise TypeError(
                "reshape_transform must be a function of a tensor, got "
                f"{type(reshape_transform).__name__}."
            )
        self._reshape_transform = reshape_transform

    @log_usage()
    def attribute(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        target: TargetType = None,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        relu_attributions: bool = True,
        scaling: Literal["none", "tanh"] = "none",
        attr_dim_summation: bool = True,
        relu_activations: bool | None = None,
        mask: MaskKind | None = None,
    ) -> Tensor | list[Tensor]:
        r"""
        Args:

            inputs (Tensor or tuple[Tensor, ...]): Input for which the maps are
                        computed, N examples along dimension 0.
            target (int, list, Tensor, or None, optional): The class to explain,
                        one int for all examples or one per example (list or 1-D
                        tensor). None explains the predicted class.
                        Default: None
            additional_forward_args (Any, optional): Further arguments passed to
                        ``forward_func`` after the inputs. Default: None
            attribute_to_layer_input (bool, optional): Explain the layer's input
                        instead of its output. Default: False
            relu_attributions (bool, optional): Apply LayerCAM's final ReLU.
                        Default: True
            scaling (str, optional): ``"tanh"`` applies LayerCAM's scaling for
                        fusing shallow maps, :math:`\tanh(2 L / \max L)` per
                        example. Default: ``"none"``
            attr_dim_summation (bool, optional): Sum the weighted feature maps
                        over the channels (dimension 1), as Captum's
                        ``LayerGradCam`` does. ``False`` returns the K
                        per-channel maps :math:`\mathrm{ReLU}(G^c_k) \odot A_k`
                        (N x K x h x w), with ``relu_attributions`` applied to
                        each element. Default: True
            relu_activations (bool, optional): True is ``mask="sign-aware"``,
                        False ``mask="plain"``. Default: None (see ``mask``)
            mask (str, optional): ``"plain"``
                        :math:`\mathrm{ReLU}(G^c_k) \odot A_k`, the published
                        LayerCAM; ``"sign-aware"``
                        :math:`\mathrm{ReLU}(G^c_k) \odot \mathrm{ReLU}(A_k)`;
                        ``"both-signs"`` :math:`\mathrm{ReLU}(G^c_k \odot A_k)`
                        (see above). Give ``mask`` or ``relu_activations``, not
                        both. Default: None, which is ``"plain"``

        Returns:
            *Tensor* or *list[Tensor]* of **attributions**:
            - **attributions**: N x 1 x h x w maps at the layer's resolution
              (N x K x h x w with ``attr_dim_summation=False``), one per layer
              when ``layer`` is a list.

        Examples::

            >>> net = torchvision.models.resnet18().eval()
            >>> layer_cam = LayerCam(net, net.layer1)
            >>> x = torch.randn(2, 3, 224, 224)
            >>> maps = layer_cam.attribute(x, target=3)           # 2 x 1 x 56 x 56
            >>> upsampled = LayerAttribution.interpolate(maps, (224, 224), "bilinear")
        """
        mask_kind = resolve_mask(mask, relu_activations, "plain")
        if scaling not in ("none", "tanh"):
            raise ValueError(f"scaling must be 'none' or 'tanh', got {scaling!r}.")
        passes = self._passes(
            inputs,
            target,
            additional_forward_args,
            attribute_to_layer_input,
            gradients=True,
        )
        maps = []
        for activation, gradient in zip(passes.activations, passes.gradients):
            weighted = spatial_mask(activation, gradient, mask_kind)
            if attr_dim_summation:
                cam = channel_sum(weighted, relu_attributions)
            else:
                cam = torch.relu(weighted) if relu_attributions else weighted
            if scaling == "tanh":
                peak = cam.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1, 1)
                cam = torch.tanh(2 * cam / peak)
            maps.append(cam)
        return self._format_result(maps)
