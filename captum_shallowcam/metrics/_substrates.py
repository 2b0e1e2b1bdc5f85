r"""Substrates for perturbation metrics: what a perturbed pixel becomes.

A substrate is a tensor that broadcasts to the images, or a callable that maps
N x C x H x W images to such a tensor. Two blurs are provided, because the
papers' protocols differ in exactly this:

* :class:`GaussianBlur`: torchvision's ``gaussian_blur``, a truncated Gaussian
  of ``kernel_size`` taps, padding by reflection. This package's protocol
  (kernel 11, sigma 5) and Group-CAM's (kernel 51, sigma 50, which is also
  what kornia's ``gaussian_blur2d`` computes).
* :class:`RiseBlur`: RISE's own blur (``eclique/RISE``, ``evaluation.gkern``
  and its notebook): the kernel is scipy's ``gaussian_filter(delta, sigma)``
  of a ``kernel_size`` x ``kernel_size`` delta. scipy's filter reflects at
  the edge of that small window, so the kernel is much flatter than a
  truncated Gaussian. It is applied per channel by ``conv2d`` with zero
  padding, so border pixels darken towards zero.
"""

import math
import numbers
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "GaussianBlur",
    "RiseBlur",
    "SubstrateType",
    "make_substrate",
    "rise_kernel",
]

SubstrateType = Tensor | Callable[[Tensor], Tensor] | None


def _checked_blur(kind: str, kernel_size: int, sigma: float) -> tuple[int, float]:
    """``(kernel_size, sigma)``, or a ValueError: an even window shifts the
    image by half a pixel (and changes its size), and sigma 0 divides by 0."""
    if (
        isinstance(kernel_size, bool)
        or not isinstance(kernel_size, numbers.Integral)
        or kernel_size < 1
        or kernel_size % 2 == 0
    ):
        raise ValueError(
            f"{kind} kernel_size must be an odd positive int (the window is "
            f"centred on each pixel), got {kernel_size!r}; e.g. {kind}(11, 5)."
        )
    if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real):
        raise ValueError(f"{kind} sigma must be a number, got {sigma!r}.")
    if not math.isfinite(sigma) or sigma <= 0:
        raise ValueError(
            f"{kind} sigma must be a finite number > 0 (the Gaussian's standard "
            f"deviation in pixels), got {sigma!r}; e.g. {kind}(11, 5)."
        )
    return int(kernel_size), float(sigma)


class GaussianBlur:
    r"""torchvision's ``gaussian_blur`` (reflection padding) as a substrate.

    Args:
        kernel_size (int, optional): Taps of the (odd) kernel. Default: 11
        sigma (float, optional): Standard deviation in pixels. Default: 5.0
    """

    def __init__(self, kernel_size: int = 11, sigma: float = 5.0) -> None:
        self.kernel_size, self.sigma = _checked_blur("GaussianBlur", kernel_size, sigma)

    def check_size(self, images: Tensor) -> None:
        r"""Raises if the images are too small for reflection padding."""
        half = self.kernel_size // 2
        if min(images.shape[-2:]) <= half:
            raise ValueError(
                f"the Gaussian blur substrate (kernel size {self.kernel_size}) "
                f"needs images of at least {half + 1} x {half + 1} pixels, got "
                f"{tuple(images.shape[-2:])}. Pass an insertion_substrate "
                "tensor or callable for such small images."
            )

    def __call__(self, images: Tensor) -> Tensor:
        from torchvision.transforms.functional import gaussian_blur

        self.check_size(images)
        return gaussian_blur(images, kernel_size=self.kernel_size, sigma=self.sigma)

    def __repr__(self) -> str:
        return (
            f"GaussianBlur(kernel_size={self.kernel_size}, sigma={self.sigma:g}, "
            "padding='reflect')"
        )


def rise_kernel(
    kernel_size: int = 11, sigma: float = 5.0, truncate: float = 4.0
) -> Tensor:
    r"""RISE's blur kernel, ``scipy.ndimage.gaussian_filter(delta, sigma)``.

    The delta is a ``kernel_size`` x ``kernel_size`` window with a one in the
    middle. scipy filters it separably with a Gaussian of radius
    ``int(truncate * sigma + 0.5)`` (normalised to sum 1), extending the
    window by half-sample reflection (``mode="reflect"``: ``c b a | a b c``),
    so the mass that falls outside the window is folded back in. Computed
    here in float64 without scipy; the result is float32, as RISE's is.
    """
    radius = int(truncate * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    weights = torch.exp(-0.5 * (offsets / sigma) ** 2)
    weights /= weights.sum()
    # Position q of the reflected line (q in [-radius, size - 1 + radius])
    # holds the window's sample at reflect(q); period 2 * size.
    positions = torch.arange(-radius, kernel_size + radius)
    period = 2 * kernel_size
    folded = positions % period
    samples = torch.where(folded < kernel_size, folded, period - 1 - folded)
    line = (samples == kernel_size // 2).to(torch.float64)
    # out[i] = sum_d weights[d] * line[i + d] (scipy correlates).
    profile = torch.stack(
        [weights @ line[i : i + 2 * radius + 1] for i in range(kernel_size)]
    )
    return torch.outer(profile, profile).to(torch.float32)


class RiseBlur:
    r"""RISE's blur substrate: :func:`rise_kernel` per channel, zero padding.

    ``conv2d(images, kernel, padding=kernel_size // 2)`` with the kernel on the
    channel diagonal, exactly as RISE's notebook builds it.

    Args:
        kernel_size (int, optional): Window of the kernel. Default: 11
        sigma (float, optional): scipy's sigma. Default: 5.0
    """

    def __init__(self, kernel_size: int = 11, sigma: float = 5.0) -> None:
        self.kernel_size, self.sigma = _checked_blur("RiseBlur", kernel_size, sigma)
        self.kernel = rise_kernel(self.kernel_size, self.sigma)

    def check_size(self, images: Tensor) -> None:
        r"""Zero padding takes images of any size."""

    def __call__(self, images: Tensor) -> Tensor:
        channels = images.shape[1]
        kernel = self.kernel.to(device=images.device, dtype=images.dtype)
        weight = kernel.expand(channels, 1, *kernel.shape)
        return F.conv2d(images, weight, padding=self.kernel_size // 2, groups=channels)

    def __repr__(self) -> str:
        return (
            f"RiseBlur(kernel_size={self.kernel_size}, sigma={self.sigma:g}, "
            "padding='zeros')"
        )


def make_substrate(substrate: SubstrateType, inputs: Tensor, name: str) -> Tensor:
    r"""`substrate` for `inputs`, checked and expanded (without copy) to their shape.

    None gives zeros (the deletion default).
    """
    if substrate is None:
        return inputs.new_zeros(()).expand(inputs.shape)
    if callable(substrate) and not isinstance(substrate, Tensor):
        value = substrate(inputs)
    else:
        value = substrate
    if not isinstance(value, Tensor):
        raise TypeError(
            f"{name} must be a tensor or a callable returning a tensor, got "
            f"{type(value).__name__}."
        )
    try:
        value = torch.broadcast_to(value, inputs.shape)
    except RuntimeError:
        raise ValueError(
            f"{name} of shape {tuple(value.shape)} does not broadcast to the "
            f"inputs shape {tuple(inputs.shape)}; pass e.g. a C x 1 x 1 colour, "
            "a 1 x C x H x W image or an N x C x H x W batch."
        ) from None
    value = value.to(device=inputs.device, dtype=inputs.dtype)
    if value.is_floating_point() and not torch.isfinite(value).all():
        raise ValueError(f"{name} contains non-finite values (NaN or inf).")
    return value


def describe_substrate(substrate: SubstrateType, default: str) -> str:
    r"""A short text for result files: the substrate's repr, or `default`."""
    if substrate is None:
        return default
    if isinstance(substrate, Tensor):
        return f"tensor of shape {tuple(substrate.shape)}"
    return (
        repr(substrate)
        if hasattr(substrate, "kernel_size")
        else getattr(substrate, "__name__", type(substrate).__name__)
    )
