"""XGrad-CAM (Fu et al., BMVC 2020) as a Captum layer attribution."""

from typing import Any

from captum.log import log_usage
from torch import Tensor

from captum_shallowcam._captum_compat import TargetType
from captum_shallowcam.attr.weighted_cam import LayerWeightedCam

#: The authors' stabiliser of the activation total (``XGrad-CAM.py``).
XGRAD_EPS = 1e-6


class LayerXGradCam(LayerWeightedCam):
    r"""
    XGrad-CAM (Axiom-based Grad-CAM) weights each channel by its gradient
    averaged with the channel's own activation as the weights, the weights that
    satisfy the sensitivity and conservation axioms best:

    .. math::
        w^c_k = \frac{\sum_{ij} A_k(i,j)\, G^c_k(i,j)}{\sum_{ij} A_k(i,j) + \epsilon},
        \qquad
        L^c = \mathrm{ReLU}\Big(\sum_k w^c_k A_k\Big)

    with :math:`G^c = \partial y^c / \partial A` and :math:`\epsilon = 10^{-6}` as
    in the authors' code (Fu0511/XGrad-CAM; pytorch-grad-cam uses
    :math:`10^{-7}`, torchcam :math:`10^{-8}`). On layers whose activations can be
    negative the channel total can be near 0 and the weight large; the paper
    assumes ReLU outputs.

    Fu et al., "Axiom-based Grad-CAM: Towards Accurate Visualization and
    Explanation of CNNs", BMVC 2020, https://arxiv.org/abs/2008.02312

    The map has the layer's spatial size (N x 1 x h x w); use
    :meth:`captum.attr.LayerAttribution.interpolate` to bring it to the input's.
    """

    def channel_weights(self, activation: Tensor, gradient: Tensor) -> Tensor:
        weighted = (activation * gradient).sum(dim=(2, 3), keepdim=True)
        return weighted / (activation.sum(dim=(2, 3), keepdim=True) + XGRAD_EPS)

    @log_usage()
    def attribute(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        target: TargetType = None,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        relu_attributions: bool = True,
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

        Returns:
            *Tensor* or *list[Tensor]* of **attributions**:
            - **attributions**: N x 1 x h x w maps at the layer's resolution,
              one per layer when ``layer`` is a list.

        Examples::

            >>> net = torchvision.models.resnet18().eval()
            >>> cam = LayerXGradCam(net, net.layer4)
            >>> maps = cam.attribute(torch.randn(2, 3, 224, 224), target=3)  # 2 x 1 x 7 x 7
        """
        return self._weighted_maps(
            inputs,
            target,
            additional_forward_args,
            attribute_to_layer_input,
            relu_attributions,
        )
