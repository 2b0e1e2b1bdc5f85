r"""The base of the CAM methods whose map is a weighted sum of a layer's channels.

Grad-CAM++ and XGrad-CAM (and Grad-CAM) differ only in the channel weights
:math:`w_k` they compute from the layer's activation :math:`A` and gradient
:math:`G`; the map is always

.. math::
    L^c = \mathrm{ReLU}\Big(\sum_k w^c_k A_k\Big)

A variant is a subclass of :class:`LayerWeightedCam` that implements
:meth:`~LayerWeightedCam.channel_weights` and documents its ``attribute``.
"""

from typing import Any

import torch
from torch import Tensor

from captum_shallowcam._captum_compat import TargetType
from captum_shallowcam.attr._base import _LayerCamBase

__all__ = ["LayerWeightedCam", "weighted_channel_sum"]


def weighted_channel_sum(activation: Tensor, weights: Tensor, relu: bool) -> Tensor:
    r""":math:`\sum_k w_k A_k` (N x 1 x h x w) for weights of shape N x K (x 1 x 1),
    ReLU'd when ``relu``."""
    weights = weights.reshape(*weights.shape[:2], 1, 1).to(activation.dtype)
    summed = (weights * activation).sum(dim=1, keepdim=True)
    return torch.relu(summed) if relu else summed


class LayerWeightedCam(_LayerCamBase):
    r"""Base of the gradient-weighted CAM methods: one forward pass, one gradient
    backward to the layer, and :math:`L^c = \mathrm{ReLU}(\sum_k w^c_k A_k)` with
    the weights of :meth:`channel_weights`."""

    def channel_weights(
        self, activation: Tensor, gradient: Tensor, **options: Any
    ) -> Tensor:
        r"""The channel weights :math:`w^c_k` (N x K x 1 x 1) of the layer's
        activation and gradient (both N x K x h x w)."""
        raise NotImplementedError

    def _weighted_maps(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        target: TargetType,
        additional_forward_args: Any,
        attribute_to_layer_input: bool,
        relu_attributions: bool,
        **options: Any,
    ) -> Tensor | list[Tensor]:
        passes = self._passes(
            inputs,
            target,
            additional_forward_args,
            attribute_to_layer_input,
            gradients=True,
        )
        maps = [
            weighted_channel_sum(
                activation,
                self.channel_weights(activation, gradient, **options),
                relu_attributions,
            )
            for activation, gradient in zip(passes.activations, passes.gradients)
        ]
        return self._format_result(maps)
