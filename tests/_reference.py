"""Explicit reference implementations for the layer-method tests.

Everything here is written with plain tensor operations (convolutions, transposed
convolutions, pooling with indices), independently of the package's relevance
engine, so that the tests compare the package against a second computation
rather than against itself.

LRP conventions (those documented in ``docs/method.rst``):

* conv / linear, z+ rule for non-negative inputs:
  ``R_i = x_i * sum_j w+_ij R_j / (sum_i' x_i' w+_i'j + 1e-9)`` (bias ignored);
* max-pool: winner-take-all (the relevance goes to the arg-max of the window);
* average pools: proportional, ``R_i = x_i * dz/dx_i * R / z``;
* ReLU, dropout, flatten: relevance passes unchanged.
"""

from __future__ import annotations

import copy
import unittest
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from captum.testing.helpers.basic import assertTensorAlmostEqual
from torch import Tensor, nn

if TYPE_CHECKING:
    from models import SmallVgg

EPS = 1e-9

#: Tolerance, relative to the largest expected value, of comparisons with the
#: explicit LRP reference. The stabilisers of LRP rules (the package may use up
#: to 1e-6 of a layer's largest |z|; the reference uses 1e-9) shift the relevance
#: of weak channels by far less than this, while a wrong rule changes a map by
#: O(1) of its maximum.
REL_RTOL = 1e-3
#: Tolerance of convergence deltas (sum of initial relevance minus relevance at
#: the layer) that must be 0: float32 rounding and stabilisers only.
DELTA_ATOL = 1e-5
_TEST_CASE = unittest.TestCase()  # assertTensorAlmostEqual wants a TestCase


def one_hot(target: Tensor, num_classes: int) -> Tensor:
    return F.one_hot(target, num_classes).to(torch.float32)


def initial_relevance(kind: str, target: Tensor, num_classes: int) -> Tensor:
    """The relevance put on the logits: ``"target"`` or ``"contrastive"``."""
    e = one_hot(target, num_classes)
    if kind == "target":
        return e
    if kind == "contrastive":
        return e - (1 - e) / num_classes
    raise ValueError(kind)


def zplus_linear(x: Tensor, weight: Tensor, relevance: Tensor) -> Tensor:
    """z+ rule through ``x @ weight.T`` for non-negative ``x`` (N x I)."""
    assert bool((x >= 0).all()), "the explicit z+ reference assumes x >= 0"
    w_pos = weight.clamp(min=0)
    z = x @ w_pos.T
    live = relevance != 0
    assert bool((z[live] > 0).all()), "an output with relevance has no positive input"
    return x * ((relevance / (z + EPS)) @ w_pos)


def zplus_conv2d(
    x: Tensor, weight: Tensor, relevance: Tensor, stride: int = 1, padding: int = 0
) -> Tensor:
    """z+ rule through ``conv2d(x, weight)`` for non-negative ``x`` (N x C x H x W).

    The backward of a convolution is the transposed convolution with the same
    weight; ``output_padding`` restores the input size for strided convs.
    """
    assert bool((x >= 0).all()), "the explicit z+ reference assumes x >= 0"
    w_pos = weight.clamp(min=0)
    z = F.conv2d(x, w_pos, stride=stride, padding=padding)
    live = relevance != 0
    assert bool((z[live] > 0).all()), "an output with relevance has no positive input"
    s = relevance / (z + EPS)
    back = F.conv_transpose2d(s, w_pos, stride=stride, padding=padding)
    # Pad at the bottom/right when the strided conv dropped the last rows/cols.
    dh, dw = x.shape[2] - back.shape[2], x.shape[3] - back.shape[3]
    back = F.pad(back, (0, dw, 0, dh))
    return x * back


def epsilon_conv2d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    relevance: Tensor,
    epsilon: float = 1e-9,
    padding: int = 0,
) -> Tensor:
    """Epsilon rule through ``conv2d(x, weight, bias)``: all weights, bias kept,
    ``R_i = x_i * sum_j w_ij R_j / (z_j + eps * sign(z_j))``."""
    z = F.conv2d(x, weight, bias, padding=padding)
    z = z + epsilon * torch.where(z >= 0, 1.0, -1.0)
    back = F.conv_transpose2d(relevance / z, weight, padding=padding)
    return x * back


def max_pool_wta(x: Tensor, relevance: Tensor, kernel_size: int, stride: int) -> Tensor:
    """Winner-take-all through ``max_pool2d``: relevance to the arg-max."""
    _, indices = F.max_pool2d(x, kernel_size, stride, return_indices=True)
    out = torch.zeros_like(x).flatten(2)
    out.scatter_add_(2, indices.flatten(2), relevance.flatten(2))
    return out.view_as(x)


def global_avg_pool_prop(x: Tensor, relevance: Tensor) -> Tensor:
    """Proportional rule through the global average pool (N x C x H x W -> N x C):
    ``R_ij = x_ij / sum(x) * R`` (the 1/(H*W) cancels)."""
    hw = x.shape[2] * x.shape[3]
    z = x.mean(dim=(2, 3), keepdim=True)
    z = z + EPS * torch.where(z >= 0, 1.0, -1.0)
    return x / hw * relevance[:, :, None, None] / z


def layer_cam_map(activation: Tensor, gradient: Tensor) -> Tensor:
    """ReLU(sum_k ReLU(G_k) A_k), N x 1 x h x w."""
    return torch.relu((torch.relu(gradient) * activation).sum(1, keepdim=True))


def relevance_cam_map(
    activation: Tensor, relevance: Tensor, relu: bool = True
) -> Tensor:
    """sum_k alpha_k A_k with alpha_k = sum_ij R_k(i, j) (ReLU'd when ``relu``)."""
    alpha = relevance.sum(dim=(2, 3), keepdim=True)
    out = (alpha * activation).sum(1, keepdim=True)
    return torch.relu(out) if relu else out


def shallow_cam_v1_map(
    activation: Tensor,
    gradient: Tensor,
    relevance: Tensor,
    relu: bool = True,
    gated: bool = False,
) -> Tensor:
    """The paper's plain form on a layer with A >= 0; ``gated``: alpha_k counts
    the relevance only where G_k > 0 and A_k > 0 (the split-gated mask there)."""
    if gated:
        relevance = relevance * ((gradient > 0) & (activation > 0))
    alpha = relevance.sum(dim=(2, 3), keepdim=True)
    out = (alpha * torch.relu(gradient) * activation).sum(1, keepdim=True)
    return torch.relu(out) if relu else out


def unit_range(m: Tensor) -> Tensor:
    flat = m.flatten(1)
    low = flat.min(1).values.view(-1, 1, 1, 1)
    high = flat.max(1).values.view(-1, 1, 1, 1)
    return (m - low) / (high - low)


def shallow_cam_v3_map(
    activation: Tensor, gradient: Tensor, relevance: Tensor, relu: bool = True
) -> Tensor:
    mask = unit_range((torch.relu(gradient) * activation).sum(1, keepdim=True))
    alpha = relevance.sum(dim=(2, 3), keepdim=True)
    out = mask * (alpha * activation).sum(1, keepdim=True)
    return torch.relu(out) if relu else out


def hooked_layer_cam(
    model: nn.Module, layer: nn.Module, x: Tensor, target: int | list[int]
) -> Tensor:
    """LayerCAM the plain way: a forward hook keeps the layer's output, and
    ``torch.autograd.grad`` takes the gradient of the target logits there."""
    kept: list[Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: kept.append(out))
    try:
        with torch.enable_grad():
            logits = model(x)
            t = torch.as_tensor(target).expand(x.shape[0])
            score = logits.gather(1, t[:, None]).sum()
            (grad,) = torch.autograd.grad(score, kept[0])
    finally:
        handle.remove()
    return layer_cam_map(kept[0].detach(), grad)


def model_fingerprint(model: nn.Module) -> dict:
    """What must be unchanged after an explanation call."""
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "dict_keys": {name: sorted(m.__dict__) for name, m in model.named_modules()},
        "training": {name: m.training for name, m in model.named_modules()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
    }


def hook_counts(model: nn.Module) -> dict:
    return {
        name: (
            len(m._forward_hooks),
            len(m._forward_pre_hooks),
            len(m._backward_hooks),
            len(m._backward_pre_hooks),
        )
        for name, m in model.named_modules()
    }


# ------------------------------------------------------------------ small models
def small_vgg_relevance(
    model: SmallVgg, x: Tensor, r_logits: Tensor
) -> dict[str, tuple[Tensor, Tensor]]:
    """Explicit forward and z+ LRP backward through :class:`SmallVgg`, from the
    relevance ``r_logits`` (N x C) put on the logits.

    Returns, per layer name (``"features.1"``, ``"features.2"``, ``"features.4"``),
    the pair (activation, relevance at the layer's output).
    """
    f = model.features
    w1, w2, wfc = f[0].weight.detach(), f[3].weight.detach(), model.fc.weight.detach()
    a1 = torch.relu(F.conv2d(x, w1, padding=1))  # features.1 (ReLU) output
    p1 = F.max_pool2d(a1, 2)  # features.2 (MaxPool) output
    a2 = torch.relu(F.conv2d(p1, w2, padding=1))  # features.4 (ReLU) output
    pooled = a2.mean(dim=(2, 3))
    r_pooled = zplus_linear(pooled, wfc, r_logits)  # fc
    r_a2 = global_avg_pool_prop(a2, r_pooled)  # avgpool (flatten: identity)
    r_p1 = zplus_conv2d(p1, w2, r_a2, padding=1)  # relu (identity), conv 2
    r_a1 = max_pool_wta(a1, r_p1, 2, 2)  # max-pool: winner-take-all
    return {
        "features.1": (a1, r_a1),
        "features.2": (p1, r_p1),
        "features.4": (a2, r_a2),
    }


def small_vgg_gradient(
    model: SmallVgg, x: Tensor, target: Tensor, layer: str
) -> Tensor:
    """d y_target / d A at ``layer`` of the explicit forward of :class:`SmallVgg`
    (autograd on the test's own functional forward, not the package's)."""
    f = model.features
    w1, w2, wfc = f[0].weight.detach(), f[3].weight.detach(), model.fc.weight.detach()
    with torch.enable_grad():
        a1 = torch.relu(F.conv2d(x, w1, padding=1)).requires_grad_(True)
        p1 = F.max_pool2d(a1, 2)
        p1.retain_grad()
        a2 = torch.relu(F.conv2d(p1, w2, padding=1))
        a2.retain_grad()
        logits = a2.mean(dim=(2, 3)) @ wfc.T
        logits.gather(1, target[:, None]).sum().backward()
    grads = {"features.1": a1.grad, "features.2": p1.grad, "features.4": a2.grad}
    return grads[layer]


def assert_close(
    actual: Tensor, expected: Tensor, rtol: float = 1e-5, atol: float = 1e-7
):
    """Captum's assertTensorAlmostEqual (max mode) with a tolerance relative to the
    largest expected value."""
    expected = torch.as_tensor(expected, dtype=actual.dtype)
    delta = atol + rtol * float(expected.abs().max()) if expected.numel() else atol
    assertTensorAlmostEqual(_TEST_CASE, actual, expected, delta=delta, mode="max")


# ------------------------------------------------------------------ sanity checks
def average_ranks(values: Tensor) -> Tensor:
    """Ranks 1..n of a 1-D tensor; tied values share the mean of their ranks."""
    order = torch.argsort(values, stable=True)
    ranks = torch.empty(values.numel(), dtype=torch.float64)
    ranks[order] = torch.arange(1, values.numel() + 1, dtype=torch.float64)
    for value in values.unique():
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman_by_ranks(a: Tensor, b: Tensor) -> float:
    """Spearman's rho: the Pearson correlation of the average ranks."""
    ra = average_ranks(a.flatten().double())
    rb = average_ranks(b.flatten().double())
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / ((ra**2).sum() * (rb**2).sum()).sqrt())


def randomization_reference(
    model: nn.Module,
    explain,
    x: Tensor,
    target: Tensor,
    top_down: list[str],
    cumulative: bool,
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """Adebayo et al. (NeurIPS 2018, Sec. 3.1), as the paper describes it: the
    modules ``top_down`` (named by hand, output first) are re-initialised one
    after the other, cumulatively (cascading) or each in a fresh copy of the
    trained model (independent); module k under ``manual_seed(seed + k)``.
    Returns K x N rank correlations of the maps and of their absolute values
    with the trained model's maps."""
    trained = explain(copy.deepcopy(model), x, target).detach()
    randomized = copy.deepcopy(model)
    plain, absolute = [], []
    for k, name in enumerate(top_down):
        if not cumulative:
            randomized = copy.deepcopy(model)
        torch.manual_seed(seed + k)
        randomized.get_submodule(name).reset_parameters()
        maps = explain(randomized, x, target).detach()
        plain.append([spearman_by_ranks(a, b) for a, b in zip(trained, maps)])
        absolute.append(
            [spearman_by_ranks(a.abs(), b.abs()) for a, b in zip(trained, maps)]
        )
    return torch.tensor(plain, dtype=torch.float64), torch.tensor(
        absolute, dtype=torch.float64
    )


# ------------------------------------------------- the CAM family (authors' code)
# Each reference below follows the authors' published code step by step (one
# image, one channel or group at a time, maps at the input's size where the
# authors work there), with plain hooks and torch.autograd.grad, independently
# of the package's engine and batching.


def hooked_activation_and_gradient(
    model: nn.Module, layer: nn.Module, x: Tensor, target: list[int]
) -> tuple[Tensor, Tensor]:
    """The layer's output and the gradient of the target logits there."""
    kept: list[Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: kept.append(out))
    try:
        with torch.enable_grad():
            logits = model(x)
            score = logits.gather(1, torch.as_tensor(target)[:, None]).sum()
            (grad,) = torch.autograd.grad(score, kept[0])
    finally:
        handle.remove()
    return kept[0].detach(), grad


def grad_cam_plus_plus_authors(activation: Tensor, gradient: Tensor) -> Tensor:
    """adityac94/Grad_CAM_plus_plus misc/utils.py, per example, without the
    exp(score) factor (a positive constant per example): the map before ReLU."""
    maps = []
    for a, g in zip(activation.double(), gradient.double()):
        global_sum = a.sum(dim=(1, 2)).view(-1, 1, 1)
        alpha_num = g**2
        alpha_denom = g**2 * 2.0 + g**3 * global_sum
        alpha_denom = torch.where(alpha_denom != 0.0, alpha_denom, 1.0)
        alphas = alpha_num / alpha_denom
        weights = torch.clamp(g, min=0.0)
        alphas_thresholding = torch.where(weights != 0, alphas, 0.0)
        norm = alphas_thresholding.sum(dim=(1, 2))
        norm = torch.where(norm != 0.0, norm, 1.0)
        alphas = alphas / norm.view(-1, 1, 1)
        deep_linearization_weights = (weights * alphas).sum(dim=(1, 2))
        maps.append((deep_linearization_weights.view(-1, 1, 1) * a).sum(0))
    return torch.stack(maps)[:, None].float()


def score_cam_authors(model: nn.Module, layer: nn.Module, x: Tensor, c: int) -> Tensor:
    """haofanwang/Score-CAM cam/scorecam.py for one image (1 x C x H x W): the
    ReLU'd sum of score-weighted upsampled channels, before the final scaling."""
    kept: list[Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: kept.append(out))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    activations = kept[0]
    _, k, _, _ = activations.shape
    h, w = x.shape[2:]
    score_saliency_map = torch.zeros((1, 1, h, w))
    with torch.no_grad():
        for i in range(k):
            saliency_map = activations[:, i : i + 1]
            saliency_map = F.interpolate(
                saliency_map, size=(h, w), mode="bilinear", align_corners=False
            )
            if saliency_map.max() == saliency_map.min():
                continue
            norm_saliency_map = (saliency_map - saliency_map.min()) / (
                saliency_map.max() - saliency_map.min()
            )
            output = F.softmax(model(x * norm_saliency_map), dim=1)
            score_saliency_map += output[0][c] * saliency_map
    return F.relu(score_saliency_map)


def ablation_cam_reference(
    model: nn.Module, layer: nn.Module, x: Tensor, c: int
) -> Tensor:
    """Ramaswamy's weights (y - y_k) / y for one image, channel k zeroed at the
    layer's output one forward pass at a time: the map before ReLU."""
    state = {"channel": None}

    def ablate(_m, _i, out):
        if state["channel"] is None:
            return None
        out = out.clone()
        out[:, state["channel"]] = 0
        return out

    kept: list[Tensor] = []
    keep = layer.register_forward_hook(lambda _m, _i, out: kept.append(out))
    handle = layer.register_forward_hook(ablate)
    try:
        with torch.no_grad():
            y = model(x)[0, c]
            activation = kept[0]
            weights = []
            for k in range(activation.shape[1]):
                state["channel"] = k
                weights.append((y - model(x)[0, c]) / y)
    finally:
        keep.remove()
        handle.remove()
    weights = torch.stack(weights).view(1, -1, 1, 1)
    return (weights * activation).sum(1, keepdim=True)


def gaussian_blur_reflect(x: Tensor, kernel_size: int, sigma: float) -> Tensor:
    """kornia's gaussian_blur2d (reflection padding), as separable convolutions."""
    half = kernel_size // 2
    taps = torch.arange(kernel_size, dtype=x.dtype) - half
    kernel = torch.exp(-(taps**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = x.shape[1]
    padded = F.pad(x, (half, half, half, half), mode="reflect")
    rows = F.conv2d(
        padded, kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels
    )
    return F.conv2d(
        rows, kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels
    )


def group_cam_authors(
    model: nn.Module, layer: nn.Module, x: Tensor, c: int, groups: int
) -> Tensor:
    """wofmanaf/Group-CAM cam/groupcam.py for one image (no clustering), before
    the final scaling; groups whose map is constant (the authors' 0/0) get
    weight 0."""
    _, _, h, w = x.shape
    activations, gradients = hooked_activation_and_gradient(model, layer, x, [c])
    b, k, u, v = activations.size()
    alpha = gradients.view(b, k, -1).mean(2)
    weights = alpha.view(b, k, 1, 1)
    activations = weights * activations
    chunks = activations.chunk(groups, 1)
    # the authors reshape to `groups` rows, which fails when torch.chunk makes
    # fewer (K < groups, or K not a multiple): the chunks actually made are used
    groups = len(chunks)
    saliency_map = torch.cat(chunks, dim=0)
    saliency_map = F.relu(saliency_map.sum(1, keepdim=True))
    saliency_map = F.interpolate(
        saliency_map, size=(h, w), mode="bilinear", align_corners=False
    )
    flat = saliency_map.reshape(groups, -1)
    inter_min = flat.min(dim=-1, keepdim=True)[0]
    inter_max = flat.max(dim=-1, keepdim=True)[0]
    constant = (inter_max == inter_min).view(-1)
    norm = (flat - inter_min) / torch.where(
        inter_max > inter_min, inter_max - inter_min, 1.0
    )
    norm_saliency_map = norm.reshape(groups, 1, h, w)
    blurred = gaussian_blur_reflect(x, 51, 50.0)
    with torch.no_grad():
        base_line = F.softmax(model(blurred), dim=-1)[0][c]
        blur_x = x * norm_saliency_map + blurred * (1 - norm_saliency_map)
        output = F.softmax(model(blur_x), dim=-1)
    score = F.relu(output[:, c] - base_line)
    score = torch.where(constant, 0.0, score).view(-1, 1, 1, 1)
    return torch.sum(saliency_map * score, dim=0, keepdim=True)


def integrated_grad_cam_authors(
    model: nn.Module, layer: nn.Module, x: Tensor, c: int, num_steps: int
) -> Tensor:
    """smstrzd/IntegratedGradCAM ``integrated_gradcam`` for one image (zero
    baseline): the sum over the path of TorchRay's ReLU'd Grad-CAM maps, at the
    layer's resolution (before the authors' resize)."""
    baseline = x[0] * 0.0
    image_stack = torch.stack(
        [baseline + (x[0] - baseline) * (i / num_steps) for i in range(num_steps)]
    )
    activation, gradient = hooked_activation_and_gradient(
        model, layer, image_stack, [c] * num_steps
    )
    grad_weight = gradient.mean(dim=(2, 3), keepdim=True)
    saliency = torch.clamp((activation * grad_weight).sum(1, keepdim=True), min=0)
    return saliency.sum(0, keepdim=True)
