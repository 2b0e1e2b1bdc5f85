"""Score-CAM (Wang et al., CVPR Workshops 2020) as a Captum layer attribution."""

from typing import Any

import torch
import torch.nn.functional as F
from captum.log import log_usage
from torch import Tensor, nn

from captum_shallowcam._captum_compat import TargetType
from captum_shallowcam.attr._base import unit_range
from captum_shallowcam.attr.perturbation_cam import (
    LayerPerturbationCam,
    PerturbationCall,
)


class LayerScoreCam(LayerPerturbationCam):
    r"""
    Score-CAM weights each channel by the class probability of the input masked
    by that channel, without gradients:

    .. math::
        M_k = \frac{U(A_k) - \min U(A_k)}{\max U(A_k) - \min U(A_k)},
        \qquad
        w^c_k = \mathrm{softmax}\big(f(x \odot M_k)\big)_c,
        \qquad
        L^c = \mathrm{ReLU}\Big(\sum_k w^c_k A_k\Big)

    where :math:`U` upsamples bilinearly to the input's size
    (``align_corners=False``) and a constant channel gets weight 0. This is the
    authors' code (haofanwang/Score-CAM, ``cam/scorecam.py``). Where others
    differ:

    * the authors sum the *upsampled* channels, :math:`\sum_k w_k U(A_k)`, and
      apply the ReLU and a min-max scaling at the input's size; upsampling is
      linear, so :math:`U(\sum_k w_k A_k)` is that sum exactly; the ReLU here
      comes before upsampling (``relu_attributions=False`` then
      :meth:`~captum.attr.LayerAttribution.interpolate` and a ReLU give the
      authors' map before its scaling);
    * the paper's equation subtracts the score of a baseline input; the
      authors' code does not, and neither does this class;
    * pytorch-grad-cam's ``ScoreCAM`` takes a softmax over the channels of the
      masked-input *logits* and upsamples with ``align_corners=True``;
      torchcam's ``ScoreCAM`` takes a softmax over the channels of the logit
      increase and normalises the channels before upsampling.

    The masked inputs are built and run ``max_examples_per_batch`` at a time
    under ``torch.no_grad()``, on the inputs' device: one forward pass per
    non-constant channel and example, and memory flat in the number of
    channels.

    Wang et al., "Score-CAM: Score-Weighted Visual Explanations for
    Convolutional Neural Networks", CVPR Workshops 2020,
    https://arxiv.org/abs/1910.01279
    """

    @log_usage()
    def attribute(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        target: TargetType = None,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        relu_attributions: bool = True,
        max_examples_per_batch: int = 32,
        show_progress: bool = False,
    ) -> Tensor | list[Tensor]:
        r"""
        Args:

            inputs (Tensor): Images (N x C x H x W) for which the maps are
                        computed (a tuple of one tensor is accepted).
            target (int, list, Tensor, or None, optional): The class to explain,
                        one int for all examples or one per example (list or 1-D
                        tensor). None explains the predicted class.
                        Default: None
            additional_forward_args (Any, optional): Further arguments passed to
                        ``forward_func`` after the inputs; tensors with a batch
                        dimension must have one row per example. Default: None
            attribute_to_layer_input (bool, optional): Use the layer's input
                        instead of its output. Default: False
            relu_attributions (bool, optional): Apply the final ReLU.
                        Default: True
            max_examples_per_batch (int, optional): Masked inputs per forward
                        pass. Default: 32
            show_progress (bool, optional): Show a progress bar over the masked
                        inputs. Default: False

        Returns:
            *Tensor* or *list[Tensor]* of **attributions**:
            - **attributions**: N x 1 x h x w maps at the layer's resolution,
              one per layer when ``layer`` is a list.

        Examples::

            >>> net = torchvision.models.resnet18().eval()
            >>> cam = LayerScoreCam(net, net.layer4)
            >>> maps = cam.attribute(torch.randn(2, 3, 224, 224), target=3)  # 2 x 1 x 7 x 7
        """
        return self._weighted_maps(
            inputs,
            target,
            additional_forward_args,
            attribute_to_layer_input,
            relu_attributions,
            max_examples_per_batch,
            show_progress,
        )

    def cam_weights(
        self,
        call: PerturbationCall,
        layer: nn.Module,
        activation: Tensor,
        gradient: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        return activation, score_weights(call, activation)


def score_weights(call: PerturbationCall, activation: Tensor) -> Tensor:
    r"""Score-CAM's weights (N x K): the target probability of each image masked
    by each of its non-constant channels, 0 for constant channels."""
    images = call.images
    flat = activation.flatten(2)
    varies = flat.amax(2) > flat.amin(2)
    rows = varies.nonzero()  # (example, channel) of each masked input
    size = images.shape[2:]

    def build(lo: int, hi: int) -> tuple[Tensor, Tensor]:
        examples, channels = rows[lo:hi, 0], rows[lo:hi, 1]
        channel_maps = activation[examples, channels].unsqueeze(1)
        upsampled = F.interpolate(
            channel_maps, size=size, mode="bilinear", align_corners=False
        )
        masks = unit_range(upsampled).to(images.dtype)
        return images.index_select(0, examples) * masks, examples

    scores = call.score_rows(rows.shape[0], build, "Score-CAM", softmax=True)
    weights = torch.zeros(varies.shape, device=activation.device)
    weights[rows[:, 0], rows[:, 1]] = scores.to(weights.device)
    return weights
