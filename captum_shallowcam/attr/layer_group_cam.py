"""Group-CAM (Zhang et al., 2021) as a Captum layer attribution."""

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
from captum_shallowcam.metrics import GaussianBlur


class LayerGroupCam(LayerPerturbationCam):
    r"""
    Group-CAM splits the layer's gradient-weighted channels into groups, turns
    each group into a mask that keeps the image where the group is active and
    blurs it elsewhere, and weights the group by how much the class probability
    rises above that of the blurred image:

    .. math::
        M_g = \mathrm{ReLU}\Big(\sum_{k \in g} \bar G^c_k A_k\Big),
        \quad \bar G^c_k = \frac{1}{hw}\sum_{ij} G^c_k(i,j),
        \qquad
        x_g = x \odot N_g + \tilde x \odot (1 - N_g),

    .. math::
        w^c_g = \mathrm{ReLU}\big(p_c(x_g) - p_c(\tilde x)\big),
        \qquad
        L^c = \sum_g w^c_g M_g

    with :math:`N_g` the min-max scaled bilinear upsampling of :math:`M_g` to
    the input's size, :math:`\tilde x` the Gaussian blur of :math:`x`
    (kernel 51, sigma 50, reflection padding: kornia's ``gaussian_blur2d`` in
    the authors' code) and :math:`p_c` the softmax probability. The groups are
    ``torch.chunk(channels, groups)``: consecutive channels, ``ceil(K / groups)``
    per group (fewer groups when ``K`` is not a multiple). This is the authors'
    code (wofmanaf/Group-CAM, ``cam/groupcam.py``, without clustering), except:

    * the authors sum the upsampled group maps and min-max scale the result;
      upsampling is linear, so the map here upsampled is their sum exactly, and
      the scaling is left to the caller;
    * a group whose map is constant (all zero after the ReLU, common at deep
      layers) makes the authors' mask 0/0 = NaN and their whole map NaN; here
      its mask would be 0 and its input the blurred image: its weight is 0,
      and that input is not run;
    * the authors explain one image; here each example of the batch has its own
      blurred baseline and groups.

    The masked inputs run ``max_examples_per_batch`` at a time under
    ``torch.no_grad()``: one per group and example (none for a constant group
    map) plus one blurred input per example. ``relu_attributions`` has no effect on the result (weights and
    group maps are non-negative) and is kept for the common signature.

    Zhang et al., "Group-CAM: Group Score-Weighted Visual Explanations for Deep
    Convolutional Networks", arXiv 2021, https://arxiv.org/abs/2103.13859
    """

    uses_gradients = True  # the group maps are Grad-CAM weighted

    @log_usage()
    def attribute(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        target: TargetType = None,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        relu_attributions: bool = True,
        groups: int = 32,
        blur_kernel_size: int = 51,
        blur_sigma: float = 50.0,
        max_examples_per_batch: int = 32,
        show_progress: bool = False,
    ) -> Tensor | list[Tensor]:
        r"""
        Args:

            inputs (Tensor): Images (N x C x H x W) for which the maps are
                        computed (a tuple of one tensor is accepted). The blur
                        needs H and W above ``blur_kernel_size // 2``.
            target (int, list, Tensor, or None, optional): The class to explain,
                        one int for all examples or one per example (list or 1-D
                        tensor). None explains the predicted class.
                        Default: None
            additional_forward_args (Any, optional): Further arguments passed to
                        ``forward_func`` after the inputs; tensors with a batch
                        dimension must have one row per example. Default: None
            attribute_to_layer_input (bool, optional): Use the layer's input
                        instead of its output. Default: False
            relu_attributions (bool, optional): Apply a final ReLU (the map is
                        non-negative anyway). Default: True
            groups (int, optional): Number of channel groups. Default: 32
            blur_kernel_size (int, optional): Taps of the Gaussian blur of the
                        baseline image. Default: 51
            blur_sigma (float, optional): Its standard deviation in pixels.
                        Default: 50.0
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
            >>> cam = LayerGroupCam(net, net.layer4)
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
            groups=groups,
            blur_kernel_size=blur_kernel_size,
            blur_sigma=blur_sigma,
        )

    def check_options(self, images: Tensor, *, groups: int, **blur: Any) -> None:
        if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
            raise ValueError(f"groups must be a positive int, got {groups!r}.")

    def prepare(
        self, images: Tensor, *, blur_kernel_size: int, blur_sigma: float, groups: int
    ) -> Tensor:
        """The blurred images, the baseline of every group."""
        if min(images.shape[2:]) <= blur_kernel_size // 2:
            raise ValueError(
                f"{type(self).__name__} blurs the images with a {blur_kernel_size}-tap "
                f"kernel and reflection padding, which needs images larger than "
                f"{blur_kernel_size // 2} pixels a side; got "
                f"{tuple(images.shape[2:])}. Pass a smaller blur_kernel_size."
            )
        blur = GaussianBlur(blur_kernel_size, blur_sigma)  # checks the options
        if not images.is_floating_point():
            return blur(images)
        return _separable_blur(images, blur_kernel_size, blur_sigma)

    def cam_weights(
        self,
        call: PerturbationCall,
        layer: nn.Module,
        activation: Tensor,
        gradient: Tensor,
        *,
        groups: int,
        **blur: Any,
    ) -> tuple[Tensor, Tensor]:
        group_maps = _group_maps(activation, gradient, groups)
        return group_maps, _group_weights(call, group_maps)


def _separable_blur(images: Tensor, kernel_size: int, sigma: float) -> Tensor:
    r""":class:`~captum_shallowcam.metrics.GaussianBlur` (torchvision's
    ``gaussian_blur``: its 1-D kernel, reflection padding) as a convolution of
    the rows and one of the columns: its 2-D kernel is the outer product of the
    1-D one, so the filter is the same in :math:`2/k` of the multiplications
    (the sums are rounded in another order)."""
    half = kernel_size // 2
    taps = torch.linspace(
        -half, half, steps=kernel_size, dtype=images.dtype, device=images.device
    )
    pdf = torch.exp(-0.5 * (taps / sigma).pow(2))
    kernel = pdf / pdf.sum()
    channels = images.shape[1]
    padded = F.pad(images, (half, half, half, half), mode="reflect")
    rows = F.conv2d(
        padded, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels
    )
    return F.conv2d(
        rows, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels
    )


def _group_maps(activation: Tensor, gradient: Tensor, groups: int) -> Tensor:
    r""":math:`M_g` for each example (N x G x h x w)."""
    weighted = gradient.mean(dim=(2, 3), keepdim=True) * activation
    return torch.relu(
        torch.cat([g.sum(1, keepdim=True) for g in weighted.chunk(groups, 1)], 1)
    )


def _group_weights(call: PerturbationCall, group_maps: Tensor) -> Tensor:
    r"""Rows ``0..N-1`` are the blurred images; then, for each example ``e``
    and group ``g`` in order, example ``e`` kept where group ``g`` is active.
    A constant group map scales to an all-zero mask: its input would be the
    blurred image itself, and any difference to the baseline float noise
    between forward passes of other batch sizes, not evidence; it weighs 0 and
    has no row."""
    images, blurred = call.images, call.prepared
    n, groups = group_maps.shape[:2]
    device = images.device
    flat = group_maps.flatten(2)
    varying = (flat.amax(2) != flat.amin(2)).flatten().to(device)
    pairs = torch.arange(n * groups, device=device)[varying]
    examples = torch.cat([torch.arange(n, device=device), pairs // groups])
    group = torch.cat([torch.full((n,), -1, device=device), pairs % groups])
    size = images.shape[2:]

    def build(lo: int, hi: int) -> tuple[Tensor, Tensor]:
        rows_examples, rows_groups = examples[lo:hi], group[lo:hi]
        selected = group_maps[rows_examples, rows_groups.clamp_min(0)].unsqueeze(1)
        masks = unit_range(
            F.interpolate(selected, size=size, mode="bilinear", align_corners=False)
        ).to(images.dtype)
        masks = masks * (rows_groups >= 0).to(masks.dtype).view(-1, 1, 1, 1)
        kept = images.index_select(0, rows_examples)
        base = blurred.index_select(0, rows_examples)
        return base + (kept - base) * masks, rows_examples

    scores = call.score_rows(examples.numel(), build, "Group-CAM", softmax=True)
    # the baseline of each row is the score of its example's blurred image
    baselines = scores[examples[n:].to(scores.device)]
    weights = scores.new_zeros(n * groups)
    weights[varying.to(scores.device)] = torch.relu(scores[n:] - baselines)
    return weights.view(n, groups)
