"""Grad-CAM++ (Chattopadhay et al., WACV 2018) as a Captum layer attribution."""

from typing import Any

import torch
from captum.log import log_usage
from torch import Tensor

from captum_shallowcam._captum_compat import TargetType
from captum_shallowcam.attr.weighted_cam import LayerWeightedCam


class LayerGradCamPlusPlus(LayerWeightedCam):
    r"""
    Grad-CAM++ weights each channel by the positive gradients at its positions,
    each position weighted by :math:`a^c_k(i,j)`, the second- and third-order
    terms of an exponential score :math:`Y^c = \exp(y^c)`:

    .. math::
        a^c_k(i,j) = \frac{(G^c_k(i,j))^2}
            {2 (G^c_k(i,j))^2 + \sum_{ab} A_k(a,b)\,(G^c_k(i,j))^3},
        \qquad
        w^c_k = \sum_{ij} \frac{a^c_k(i,j)}{\sum_{i'j':\,G^c_k(i',j') > 0} a^c_k(i',j')}
            \,\mathrm{ReLU}(G^c_k(i,j))

    and :math:`L^c = \mathrm{ReLU}(\sum_k w^c_k A_k)`, with
    :math:`G^c = \partial y^c / \partial A` the gradient of the logit.

    As in the authors' code (adityac94/Grad_CAM_plus_plus, ``misc/utils.py``):

    * the coefficients :math:`a^c_k` are normalised per channel to sum to 1
      over the positions with a positive gradient (the paper's equation 19 and
      pytorch-grad-cam's ``GradCAMPlusPlus`` do not normalise; pass
      ``normalize_coefficients=False`` for that form);
    * a zero denominator is replaced by 1 (pytorch-grad-cam adds ``1e-6`` to
      every denominator, which dominates when gradients are below about
      ``1e-3``; torchcam's ``GradCAMpp`` sums :math:`A \cdot G^3` over the
      positions instead of multiplying :math:`\sum A` by :math:`G^3`).

    The authors multiply all derivatives by :math:`\exp(y^c)`; that factor cancels
    in :math:`a^c_k` and scales each example's map by a positive constant, so it
    is left out (it overflows float32 for logits above 88).

    Chattopadhay et al., "Grad-CAM++: Improved Visual Explanations for Deep
    Convolutional Networks", WACV 2018, https://arxiv.org/abs/1710.11063

    The map has the layer's spatial size (N x 1 x h x w); use
    :meth:`captum.attr.LayerAttribution.interpolate` to bring it to the input's.
    """

    def channel_weights(
        self, activation: Tensor, gradient: Tensor, normalize_coefficients: bool = True
    ) -> Tensor:
        squared = gradient * gradient
        cubed = squared * gradient
        activation_sum = activation.sum(dim=(2, 3), keepdim=True)
        denominator = 2 * squared + activation_sum * cubed
        one = torch.ones((), dtype=denominator.dtype, device=denominator.device)
        coefficients = squared / torch.where(denominator != 0, denominator, one)
        positive = torch.relu(gradient)
        if normalize_coefficients:
            total = torch.where(gradient > 0, coefficients, 0).sum(
                dim=(2, 3), keepdim=True
            )
            coefficients = coefficients / torch.where(total != 0, total, one)
        return (positive * coefficients).sum(dim=(2, 3), keepdim=True)

    @log_usage()
    def attribute(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        target: TargetType = None,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        relu_attributions: bool = True,
        normalize_coefficients: bool = True,
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
            relu_attributions (bool, optional): Apply the final ReLU.
                        Default: True
            normalize_coefficients (bool, optional): Normalise the coefficients
                        :math:`a^c_k` per channel, as the authors' code does.
                        ``False`` gives the paper's equation 19 (pytorch-grad-cam's
                        form). Default: True

        Returns:
            *Tensor* or *list[Tensor]* of **attributions**:
            - **attributions**: N x 1 x h x w maps at the layer's resolution,
              one per layer when ``layer`` is a list.

        Examples::

            >>> net = torchvision.models.resnet18().eval()
            >>> cam = LayerGradCamPlusPlus(net, net.layer4)
            >>> maps = cam.attribute(torch.randn(2, 3, 224, 224), target=3)  # 2 x 1 x 7 x 7
        """
        return self._weighted_maps(
            inputs,
            target,
            additional_forward_args,
            attribute_to_layer_input,
            relu_attributions,
            normalize_coefficients=normalize_coefficients,
        )
