"""Ablation-CAM (Ramaswamy, WACV 2020) as a Captum layer attribution."""

from typing import Any

import torch
from captum.log import log_usage
from torch import Tensor, nn

from captum_shallowcam._captum_compat import TargetType
from captum_shallowcam.attr.perturbation_cam import (
    LayerPerturbationCam,
    PerturbationCall,
)


class LayerAblationCam(LayerPerturbationCam):
    r"""
    Ablation-CAM weights each channel by the relative drop of the class logit
    when that channel of the layer is set to zero:

    .. math::
        w^c_k = \frac{y^c - y^c_{A_k = 0}}{y^c},
        \qquad
        L^c = \mathrm{ReLU}\Big(\sum_k w^c_k A_k\Big)

    The channel is zeroed by a forward hook on the layer (a forward pre-hook
    with ``attribute_to_layer_input=True``), removed when the call ends; no
    module of the model is replaced, so models whose blocks take keyword
    arguments (EfficientNet-Lite) work. The ablated forwards run
    ``max_examples_per_batch`` at a time under ``torch.no_grad()``: one per
    channel and example, plus one unablated per example for :math:`y^c`.

    Differences from pytorch-grad-cam's ``AblationCAM``: it swaps the layer for
    an ``AblationLayer`` module, and when the layer's smallest activation in
    the batch is not 0 it sets the channel to that minimum minus ``1e7``
    instead of 0; here the channel is always 0, as in the paper. There is no
    authors' code.

    A target logit near 0 makes the weights large, and a negative one flips
    their sign, as in the paper's formula.

    Desai and Ramaswamy, "Ablation-CAM: Visual Explanations for Deep
    Convolutional Network via Gradient-free Localization", WACV 2020,
    https://openaccess.thecvf.com/content_WACV_2020/html/Desai_Ablation-CAM_Visual_Explanations_for_Deep_Convolutional_Network_via_Gradient-free_Localization_WACV_2020_paper.html
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
            attribute_to_layer_input (bool, optional): Ablate the channels of the
                        layer's input instead of its output. Default: False
            relu_attributions (bool, optional): Apply the final ReLU.
                        Default: True
            max_examples_per_batch (int, optional): Forward passes per batch.
                        Default: 32
            show_progress (bool, optional): Show a progress bar over the
                        forward passes. Default: False

        Returns:
            *Tensor* or *list[Tensor]* of **attributions**:
            - **attributions**: N x 1 x h x w maps at the layer's resolution,
              one per layer when ``layer`` is a list.

        Examples::

            >>> net = torchvision.models.resnet18().eval()
            >>> cam = LayerAblationCam(net, net.layer4)
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
        ablation = _Ablation(layer, activation.shape[1], call.attribute_to_layer_input)
        return activation, ablation.weights(call)


class _Ablation:
    r"""Rows ``0..N-1`` run unablated; row ``N + e * K + k`` zeroes channel ``k``
    of example ``e`` at the layer."""

    def __init__(self, layer: nn.Module, channels: int, on_input: bool) -> None:
        self.layer = layer
        self.channels = channels
        self.on_input = on_input
        self.ablated: Tensor | None = None  # channel of each row of the batch, -1: none

    def _keep(self, tensor: Tensor) -> Tensor:
        assert self.ablated is not None
        keep = torch.ones(
            tensor.shape[0], tensor.shape[1], dtype=tensor.dtype, device=tensor.device
        )
        rows = (self.ablated >= 0).nonzero()[:, 0].to(tensor.device)
        keep[rows, self.ablated[rows].to(tensor.device)] = 0
        return tensor * keep[:, :, None, None]

    def _output_hook(self, module: nn.Module, args: Any, output: Tensor) -> Tensor:
        return self._keep(output)

    def _input_hook(self, module: nn.Module, args: tuple) -> tuple:
        return (self._keep(args[0]),) + tuple(args[1:])

    def weights(self, call: PerturbationCall) -> Tensor:
        images = call.images
        n, k = images.shape[0], self.channels
        device = images.device
        examples = torch.cat(
            [
                torch.arange(n, device=device),
                torch.arange(n, device=device).repeat_interleave(k),
            ]
        )
        ablated = torch.cat(
            [
                torch.full((n,), -1, device=device),
                torch.arange(k, device=device).repeat(n),
            ]
        )

        def build(lo: int, hi: int) -> tuple[Tensor, Tensor]:
            self.ablated = ablated[lo:hi]
            return images.index_select(0, examples[lo:hi]), examples[lo:hi]

        if self.on_input:
            handle = self.layer.register_forward_pre_hook(self._input_hook)
        else:
            handle = self.layer.register_forward_hook(self._output_hook)
        try:
            scores = call.score_rows(n + n * k, build, "Ablation-CAM", softmax=False)
        finally:
            handle.remove()
            self.ablated = None
        original = scores[:n, None]
        return (original - scores[n:].view(n, k)) / original
