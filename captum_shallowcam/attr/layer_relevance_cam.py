"""Relevance-CAM (Lee et al., CVPR 2021) as a Captum layer attribution."""

from typing import Any

from captum.log import log_usage
from torch import Tensor

from captum_shallowcam._captum_compat import TargetType
from captum_shallowcam.attr._base import (
    ChannelWeights,
    InitialRelevance,
    _RelevanceCamBase,
    channel_sum,
    inter_layer_weights,
)


class LayerRelevanceCam(_RelevanceCamBase):
    r"""
    Relevance-CAM weights each channel of a layer's activation by the LRP
    relevance that channel receives from the layers above:

    .. math::
        \alpha_k = \sum_{ij} R_k(i,j), \qquad
        L^c = \mathrm{ReLU}\Big(\sum_k \alpha_k A_k\Big)

    where :math:`R` is propagated from the logits down to the layer, starting
    from the contrastive relevance :math:`+1` for class :math:`c` and
    :math:`-1/C` for the other classes. Lee et al., "Relevance-CAM: Your Model
    Already Knows Where to Look", CVPR 2021, https://arxiv.org/abs/2104.00279

    Relevance is propagated with Captum's LRP rules (see
    :mod:`captum_shallowcam.rules`) through the model as it is: BatchNorm is folded
    into the preceding conv and residual additions split relevance between
    their branches for the duration of the call; the model is not modified.
    """

    def has_convergence_delta(self) -> bool:
        r"""True: ``attribute(..., return_convergence_delta=True)`` also returns
        the relevance lost or created between the logits and the layer."""
        return True

    @log_usage()
    def attribute(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        target: TargetType = None,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        relu_attributions: bool = True,
        initial_relevance: InitialRelevance = "contrastive",
        channel_weights: ChannelWeights = "signed",
        return_convergence_delta: bool = False,
        check_conservation: bool = True,
    ) -> Tensor | list[Tensor] | tuple[Tensor | list[Tensor], Any]:
        r"""
        Args:

            inputs (Tensor or tuple[Tensor, ...]): Input for which the maps are
                        computed, N examples along dimension 0.
            target (int, list, Tensor, or None, optional): The class to explain,
                        one for all examples or one per example. None explains the
                        predicted class. Default: None
            additional_forward_args (Any, optional): Further arguments passed to
                        the model after the inputs. Default: None
            attribute_to_layer_input (bool, optional): Explain the layer's input
                        instead of its output. Default: False
            relu_attributions (bool, optional): Apply the final ReLU.
                        Default: True
            initial_relevance (str, optional): Relevance put on the logits:
                        ``"contrastive"`` (+1 for the target, -1/C for the others),
                        ``"target"`` (one-hot), or ``"clrp"``
                        (:math:`\max(0, R_{target} - R_{dual})` at the layer, the
                        dual spreading 1 over the other classes; one pass, since
                        the rules are linear in the relevance).
                        Default: ``"contrastive"``
            channel_weights (str, optional): ``"signed"`` keeps the sign of
                        :math:`\alpha` as Relevance-CAM does; ``"positive"`` uses
                        :math:`\mathrm{ReLU}(\alpha)`, ``"sqrt"``
                        :math:`\sqrt{\mathrm{ReLU}(\alpha)}`, ``"geometric"``
                        :math:`\sqrt{\mathrm{ReLU}(\alpha_k) / \sum_{ij} A_k}`
                        (0 where that sum is not positive), so that channel
                        :math:`k` adds up to the geometric mean of its
                        relevance and its activation total; ``"mass"``
                        :math:`\mathrm{ReLU}(\alpha_k) / \sum_{ij} A_k`, so that
                        it adds up to its relevance. Default: ``"signed"``
            return_convergence_delta (bool, optional): Also return, per layer, the
                        output relevance minus the relevance summed at the layer
                        (N values; with ``"clrp"``, before its final ReLU).
                        Default: False
            check_conservation (bool, optional): Warn, naming the operation, when
                        that difference exceeds 5% of the output's absolute
                        relevance. Turn off for layers inside a branch.
                        Default: True

        Returns:
            *Tensor* or *list[Tensor]* of **attributions** (N x 1 x h x w per
            layer), and with ``return_convergence_delta`` a 2-tuple of the
            attributions and the **delta** (a tensor, or a list per layer).

        Examples::

            >>> net = torchvision.models.vgg16().eval()
            >>> relevance_cam = LayerRelevanceCam(net, net.features[16])
            >>> maps = relevance_cam.attribute(torch.randn(1, 3, 224, 224), target=3)
        """
        passes = self._relevance_passes(
            inputs,
            target,
            additional_forward_args,
            attribute_to_layer_input,
            initial_relevance,
            channel_weights,
            check_conservation,
            gradients=False,
        )
        maps = [
            channel_sum(
                inter_layer_weights(r, channel_weights, a) * a, relu_attributions
            )
            for a, r in zip(passes.activations, passes.relevances)
        ]
        return self._result(maps, passes, return_convergence_delta)
