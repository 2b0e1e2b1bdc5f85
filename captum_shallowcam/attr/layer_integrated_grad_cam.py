"""Integrated Grad-CAM (Sattarzadeh et al., ICASSP 2021) as a Captum layer
attribution."""

from typing import Any

import torch
from captum.log import log_usage
from torch import Tensor

from captum_shallowcam._captum_compat import TargetType
from captum_shallowcam.attr._perturbation import chunks, progress_bar, select_rows
from captum_shallowcam.attr.perturbation_cam import LayerPerturbationCam
from captum_shallowcam.attr.weighted_cam import weighted_channel_sum


class LayerIntegratedGradCam(LayerPerturbationCam):
    r"""
    Integrated Grad-CAM sums Grad-CAM maps along a straight path of scaled
    inputs from a baseline :math:`x'` to the input :math:`x`, so that channels
    whose gradient saturates at :math:`x` still count:

    .. math::
        x_m = x' + \tfrac{m}{M}(x - x'), \quad m = 0, \dots, M-1,
        \qquad
        L^c = \mathrm{ReLU}\Big(\sum_{m=0}^{M-1}
            \mathrm{ReLU}\Big(\sum_k \bar G^c_k(x_m)\, A_k(x_m)\Big)\Big)

    with :math:`\bar G^c_k(x_m)` the spatial mean of :math:`\partial y^c / \partial
    A_k` at :math:`x_m` (Grad-CAM's weight), :math:`c` the target of the input
    :math:`x` (the predicted class by default), and :math:`M` = ``n_steps``.

    This is the authors' code (smstrzd/IntegratedGradCAM,
    ``Integrated_Grad_CAM.ipynb``: ``integrated_gradcam`` sums TorchRay's
    Grad-CAM maps, each ReLU'd, over a left Riemann sum that starts at the
    baseline and stops one step short of :math:`x`; zero baseline, 50 steps).
    ``per_step_relu=False`` integrates the signed Grad-CAM term and applies one
    ReLU at the end, :math:`\mathrm{ReLU}(\sum_m \sum_k \bar G^c_k(x_m)
    A_k(x_m))`. Both are sums, not means, over the steps (:math:`M` times the
    path average); the scale does not change the ranking of positions.

    The path images run ``max_examples_per_batch`` at a time, each batch one
    forward pass and one gradient pass through the package's engine (so the
    model is left as it was, also when a call raises); with ``target=None`` one
    more forward pass of the inputs finds their predicted classes.

    Sattarzadeh et al., "Integrated Grad-CAM: Sensitivity-Aware Visual
    Explanation of Deep Convolutional Networks via Integrated Gradient-Based
    Scoring", ICASSP 2021, https://ieeexplore.ieee.org/document/9415064
    """

    @log_usage()
    def attribute(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        target: TargetType = None,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        relu_attributions: bool = True,
        baselines: float | Tensor | None = None,
        n_steps: int = 50,
        per_step_relu: bool = True,
        max_examples_per_batch: int = 32,
        show_progress: bool = False,
    ) -> Tensor | list[Tensor]:
        r"""
        Args:

            inputs (Tensor): Images (N x C x H x W) for which the maps are
                        computed (a tuple of one tensor is accepted).
            target (int, list, Tensor, or None, optional): The class to explain,
                        one int for all examples or one per example (list or 1-D
                        tensor). None explains the class predicted for the
                        inputs. Default: None
            additional_forward_args (Any, optional): Further arguments passed to
                        ``forward_func`` after the inputs; tensors with a batch
                        dimension must have one row per example. Default: None
            attribute_to_layer_input (bool, optional): Use the layer's input
                        instead of its output. Default: False
            relu_attributions (bool, optional): Apply the final ReLU.
                        Default: True
            baselines (float or Tensor, optional): The start of the path, a
                        number or a tensor that broadcasts to the inputs.
                        Default: None (zeros, as in the authors' code)
            n_steps (int, optional): Steps :math:`M` of the path. Default: 50
            per_step_relu (bool, optional): ReLU each step's Grad-CAM map before
                        summing, as the authors' code does; ``False`` sums the
                        signed maps and applies one ReLU at the end.
                        Default: True
            max_examples_per_batch (int, optional): Path images per forward and
                        backward pass. Default: 32
            show_progress (bool, optional): Show a progress bar over the path
                        images. Default: False

        Returns:
            *Tensor* or *list[Tensor]* of **attributions**:
            - **attributions**: N x 1 x h x w maps at the layer's resolution,
              one per layer when ``layer`` is a list.

        Examples::

            >>> net = torchvision.models.resnet18().eval()
            >>> cam = LayerIntegratedGradCam(net, net.layer4)
            >>> maps = cam.attribute(torch.randn(2, 3, 224, 224), target=3, n_steps=20)
        """
        call = self.begin(
            inputs,
            target,
            additional_forward_args,
            attribute_to_layer_input,
            max_examples_per_batch,
            show_progress,
            first_pass=False,
            n_steps=n_steps,
            baselines=baselines,
        )
        # Each batch of the path checks the layers and the classes' range; the
        # inputs themselves run only when their predicted classes are needed.
        images, targets, baseline = call.images, call.targets, call.prepared
        args, batch_size = call.additional_forward_args, call.max_examples_per_batch
        n = images.shape[0]
        device = images.device
        examples = torch.arange(n, device=device).repeat_interleave(n_steps)
        fractions = torch.arange(n_steps, device=device).repeat(n) / n_steps
        sums: list[Tensor] = []
        with progress_bar(show_progress, "Integrated Grad-CAM", n * n_steps) as update:
            for lo, hi in chunks(n * n_steps, batch_size):
                rows = examples[lo:hi]
                start = baseline.index_select(0, rows)
                scale = fractions[lo:hi].view(-1, 1, 1, 1).to(images.dtype)
                path = start + (images.index_select(0, rows) - start) * scale
                passes = self._passes(
                    path,
                    targets.index_select(0, rows),
                    select_rows(args, rows),
                    attribute_to_layer_input,
                    gradients=True,
                )
                for index, (activation, gradient) in enumerate(
                    zip(passes.activations, passes.gradients)
                ):
                    weights = gradient.mean(dim=(2, 3))
                    term = weighted_channel_sum(activation, weights, per_step_relu)
                    if index == len(sums):
                        sums.append(term.new_zeros((n, *term.shape[1:])))
                    sums[index].index_add_(0, rows, term)
                update(hi - lo)
        maps = [torch.relu(s) if relu_attributions else s for s in sums]
        return self._format_result(maps)

    def check_options(self, images: Tensor, *, n_steps: int, **_: Any) -> None:
        if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
            raise ValueError(f"n_steps must be a positive int, got {n_steps!r}.")

    def prepare(
        self, images: Tensor, *, baselines: float | Tensor | None, **_: Any
    ) -> Tensor:
        """The start of the path, one per example."""
        return _baseline(baselines, images)


def _baseline(baselines: float | Tensor | None, images: Tensor) -> Tensor:
    if baselines is None:
        return torch.zeros_like(images)
    if isinstance(baselines, Tensor):
        return baselines.to(images).expand_as(images)
    return torch.full_like(images, float(baselines))
