"""The sign-aware mask (``relu_activations``) and the fusion of layer maps.

Expected maps are written out with plain tensor operations on a tiny linear
bottleneck (a conv with no activation after it), where activations are signed
and the gradient is known in closed form.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from captum_shallowcam import LayerCam, LayerShallowCam, fuse_layer_maps
from captum_shallowcam.methods import make_explainer


class BottleneckNet(nn.Module):
    """conv(1->2, 3x3) with no activation -> global avg pool -> linear(2->2).

    The conv output A is signed, and dy_c/dA_k = W[c, k] / (h w) everywhere.
    """

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 2, 3, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0, -1.0], [2.0, 1.0]]))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.conv(x)).flatten(1))


def _layercam_reference(
    net: BottleneckNet, x: Tensor, c: int, relu_activations: bool
) -> Tensor:
    a = F.conv2d(x, net.conv.weight)
    g = (net.fc.weight[c] / a[0, 0].numel()).view(1, -1, 1, 1).expand_as(a)
    if relu_activations:
        a = a.clamp(min=0)
    return (g.clamp(min=0) * a).sum(1, keepdim=True).clamp(min=0)


@pytest.mark.parametrize("c", [0, 1])
@pytest.mark.parametrize("relu_activations", [False, True])
def test_layer_cam_sign_aware_mask_hand_computed(c, relu_activations):
    net = BottleneckNet().eval()
    x = torch.randn(1, 1, 6, 6, generator=torch.Generator().manual_seed(c))
    expected = _layercam_reference(net, x, c, relu_activations)
    got = LayerCam(net, net.conv).attribute(
        x, target=c, relu_activations=relu_activations
    )
    torch.testing.assert_close(got, expected)


def test_sign_aware_mask_differs_on_signed_activations():
    net = BottleneckNet().eval()
    x = torch.randn(1, 1, 6, 6, generator=torch.Generator().manual_seed(3))
    cam = LayerCam(net, net.conv)
    assert not torch.allclose(
        cam.attribute(x, target=1), cam.attribute(x, target=1, relu_activations=True)
    )


def test_sign_aware_mask_equals_layercam_on_relu_outputs():
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU6(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5),
    ).eval()  # fmt: skip
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    layers = [net[1], net[3]]
    plain = LayerCam(net, layers).attribute(x, target=[2, 4])
    sign_aware = LayerCam(net, layers).attribute(
        x, target=[2, 4], relu_activations=True
    )
    for p, s in zip(plain, sign_aware):
        assert p.abs().sum() > 0
        torch.testing.assert_close(p, s, rtol=0, atol=0)


# ------------------------------------------------------------------ fusion
def _two_maps() -> list[Tensor]:
    fine = torch.tensor(
        [[0.0, 1, 2, 3], [4, 5, 6, 7], [0, 0, 0, 8], [1, 1, 1, 1]]
    ).view(1, 1, 4, 4)
    coarse = torch.tensor([[2.0, 4.0], [0.0, 2.0]]).view(1, 1, 2, 2)
    return [fine, coarse]


def _unit(t: Tensor) -> Tensor:
    return (t - t.min()) / (t.max() - t.min())


@pytest.mark.parametrize("mode", ["product", "max", "mean"])
def test_fuse_hand_computed(mode):
    fine, coarse = _two_maps()
    # Nearest upsampling makes the coarse map exact by hand: each value covers 2x2.
    coarse_up = coarse.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    a, b = _unit(fine), _unit(coarse_up)
    expected = {"product": a * b, "max": torch.maximum(a, b), "mean": (a + b) / 2}[mode]
    got = fuse_layer_maps([fine, coarse], mode=mode, interpolate_mode="nearest")
    assert got.shape == (1, 1, 4, 4)
    torch.testing.assert_close(got, expected)


def test_fuse_to_input_size_and_per_example_scaling():
    maps = [torch.rand(3, 1, 8, 8), torch.rand(3, 1, 4, 4) * 100]
    fused = fuse_layer_maps(maps, size=(16, 16), mode="max")
    assert fused.shape == (3, 1, 16, 16)
    # Each example's layer maps were scaled to [0, 1] on their own.
    assert torch.allclose(fused.flatten(1).amax(1), torch.ones(3))


@pytest.mark.parametrize(
    "maps, message",
    [
        (torch.rand(1, 1, 4, 4), "list"),
        ([], "list"),
        ([torch.rand(1, 2, 4, 4)], "N x 1 x h x w"),
        ([torch.rand(1, 1, 4, 4), torch.rand(2, 1, 4, 4)], "numbers of examples"),
    ],
)
def test_fuse_bad_input_names_the_fix(maps, message):
    with pytest.raises((TypeError, ValueError), match=message):
        fuse_layer_maps(maps)


def test_fuse_unknown_mode():
    with pytest.raises(ValueError, match="'product', 'max' or 'mean'"):
        fuse_layer_maps(_two_maps(), mode="sum")


# ------------------------------------------------- LayerShallowCam, sign-aware
def _positive_head_net() -> BottleneckNet:
    net = BottleneckNet().eval()
    with torch.no_grad():
        net.conv.weight.copy_(
            torch.tensor(
                [
                    [[[0.0, 0, 0], [0, 1, 0], [0, 0, 0]]],
                    [[[0.5, 0, 0], [0, 1, -0.5], [0, 0, 0]]],
                ]
            )
        )
        net.fc.weight.copy_(torch.tensor([[1.0, 3.0], [2.0, 1.0]]))
    return net


@pytest.mark.parametrize("c", [0, 1])
def test_shallow_cam_sign_aware_hand_computed(c):
    net = _positive_head_net()
    x = torch.randn(1, 1, 7, 7, generator=torch.Generator().manual_seed(5)) + 0.6
    a = F.conv2d(x, net.conv.weight)
    pooled = a.mean((2, 3))
    # The hand computation below needs positive pooled channels and some
    # negative activations (the case the option is for).
    assert bool((pooled > 0).all()) and bool((a < 0).any())
    w = net.fc.weight[c]
    # z+ through the linear layer on positive inputs, one-hot relevance:
    alpha = pooled[0] * w / (pooled[0] * w).sum()
    # the average pool passes alpha_k on in proportion to A_k (z-rule):
    r = a / a.sum((2, 3), keepdim=True) * alpha.view(1, -1, 1, 1)
    g = (w / a[0, 0].numel()).view(1, -1, 1, 1)
    alpha_pos = (r * (a >= 0)).sum((2, 3), keepdim=True).clamp(min=0)
    expected = (
        (alpha_pos * g.clamp(min=0) * a.clamp(min=0)).sum(1, keepdim=True).clamp(min=0)
    )
    got = LayerShallowCam(net, net.conv).attribute(
        x,
        target=c,
        initial_relevance="target",
        channel_weights="positive",
        relu_activations=True,
    )
    torch.testing.assert_close(got, expected)
    # Relevance on negative activations no longer counts: the weights grew.
    alpha_all = r.sum((2, 3), keepdim=True)
    assert bool((alpha_pos > alpha_all).all())


@pytest.mark.parametrize("variant", ["v1", "v2", "v3"])
def test_shallow_cam_masks_agree_on_relu_outputs(variant):
    """Where A >= 0 the plain, sign-aware, both-signs and split masks are one
    mask: the split mask (both-signs for v3, the default there) equals the
    others up to the order of float operations. The default (split-gated) is
    not one of them there: it counts the relevance where the gradient is
    positive only."""
    torch.manual_seed(2)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU6(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5),
    ).eval()  # fmt: skip
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    explainer = LayerShallowCam(net, [net[1], net[3]])

    def maps(**options):
        return explainer.attribute(x, target=[2, 4], variant=variant, **options)

    split = maps(mask="split") if variant != "v3" else maps()
    others = [maps(mask=m) for m in ("plain", "sign-aware", "both-signs")]
    for i, d in enumerate(split):
        assert d.abs().sum() > 0
        for m in others:
            torch.testing.assert_close(d, m[i], rtol=1e-5, atol=1e-7)
    if variant != "v3":
        gated = maps()
        torch.testing.assert_close(gated, maps(mask="split-gated"), rtol=0, atol=0)
        assert any(not torch.allclose(g, s) for g, s in zip(gated, split))


@pytest.mark.parametrize("c", [0, 1])
def test_shallow_cam_sign_aware_geometric_hand_computed(c):
    """The 0.2 default: CLRP relevance, sign-aware mask and weights, geometric
    weights (the default is checked by hand in
    ``test_shallow_cam_split_mask_hand_computed``)."""
    net = _positive_head_net()
    x = torch.randn(1, 1, 7, 7, generator=torch.Generator().manual_seed(5)) + 0.6
    a = F.conv2d(x, net.conv.weight)
    pooled = a.mean((2, 3))[0]

    def relevance_at_layer(k: int) -> Tensor:
        # one-hot relevance on class k, z+ through the linear layer (positive
        # inputs and weights), then the average pool's z-rule
        w = net.fc.weight[k]
        alpha = pooled * w / (pooled * w).sum()
        return a / a.sum((2, 3), keepdim=True) * alpha.view(1, -1, 1, 1)

    # CLRP with two classes: the dual is the other class, max(0, R_c - R_dual)
    r = (relevance_at_layer(c) - relevance_at_layer(1 - c)).clamp(min=0)
    alpha_pos = (r * (a >= 0)).sum((2, 3), keepdim=True).clamp(min=0)
    g = (net.fc.weight[c] / a[0, 0].numel()).view(1, -1, 1, 1)
    mask = g.clamp(min=0) * a.clamp(min=0)
    weights = (alpha_pos / mask.sum((2, 3), keepdim=True)).sqrt()
    expected = (weights * mask).sum(1, keepdim=True).clamp(min=0)
    assert expected.abs().sum() > 0
    got = LayerShallowCam(net, net.conv).attribute(
        x, target=c, mask="sign-aware", channel_weights="geometric"
    )
    torch.testing.assert_close(got, expected)
    # Each channel adds up to the geometric mean of its relevance and its mask.
    torch.testing.assert_close(
        (weights * mask).sum((2, 3)),
        (alpha_pos * mask.sum((2, 3), keepdim=True)).sqrt().flatten(1),
    )
    # The earlier development default, spelled out: sqrt weights.
    sqrt = (alpha_pos.sqrt() * mask).sum(1, keepdim=True).clamp(min=0)
    torch.testing.assert_close(
        LayerShallowCam(net, net.conv).attribute(
            x, target=c, mask="sign-aware", channel_weights="sqrt"
        ),
        sqrt,
    )
    # The 0.1 default, spelled out, is the plain form with ReLU(alpha).
    plain_weights = r.sum((2, 3), keepdim=True).clamp(min=0)
    plain = (plain_weights * g.clamp(min=0) * a).sum(1, keepdim=True).clamp(min=0)
    old = LayerShallowCam(net, net.conv).attribute(
        x, target=c, relu_activations=False, channel_weights="positive"
    )
    torch.testing.assert_close(old, plain)


# ------------------------------------------------------ compute_layer_passes
def _small_signed_net() -> nn.Module:
    torch.manual_seed(4)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1),
        nn.BatchNorm2d(6), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 4),
    ).eval()  # fmt: skip


def test_compute_layer_passes_rebuild_the_methods_maps():
    from captum_shallowcam.attr import compute_layer_passes

    net = _small_signed_net()
    x = torch.randn(2, 3, 10, 10, generator=torch.Generator().manual_seed(0))
    layers = [net[1], net[3]]  # a ReLU output and a signed BatchNorm output
    passes = compute_layer_passes(net, layers, x, target=[1, 3])
    assert passes.targets.tolist() == [1, 3] and len(passes.deltas) == 2
    shallow = LayerShallowCam(net, layers).attribute(x, target=[1, 3])
    layer_cam = LayerCam(net, layers).attribute(x, target=[1, 3])
    negative_parts = 0.0
    for a, g, r, s_map, lc_map in zip(
        passes.activations, passes.gradients, passes.relevances, shallow, layer_cam
    ):
        # the default, by hand: the split mask with mass weights, each part's
        # relevance counted where the part is positive
        terms = []
        for part in (
            g.clamp(min=0) * a.clamp(min=0),
            (-g).clamp(min=0) * (-a).clamp(min=0),
        ):
            alpha = (r * (part > 0)).sum((2, 3), keepdim=True).clamp(min=0)
            totals = part.sum((2, 3), keepdim=True)
            weights = torch.where(totals > 0, alpha / totals.clamp_min(1e-30), 0.0)
            terms.append((weights * part).sum(1, keepdim=True))
        negative_parts += float(terms[1].sum())
        torch.testing.assert_close(s_map, (terms[0] + terms[1]).clamp(min=0))
        torch.testing.assert_close(
            lc_map, (g.clamp(min=0) * a).sum(1, keepdim=True).clamp(min=0)
        )
    assert negative_parts > 0  # the negative-activation part is exercised
    plain = compute_layer_passes(net, layers, x, target=[1, 3], relevance=False)
    assert plain.relevances == [] and len(plain.gradients) == 2
    for g_plain, g in zip(plain.gradients, passes.gradients):
        torch.testing.assert_close(g_plain, g)


def test_compute_layer_passes_is_keyword_only():
    from captum_shallowcam.attr import compute_layer_passes

    net = _small_signed_net()
    with pytest.raises(TypeError):
        compute_layer_passes(net, net[1], torch.randn(1, 3, 8, 8), 1)  # type: ignore[misc]


# ------------------------------------------------ geometric channel weights
def test_geometric_weights_zero_where_the_term_has_no_positive_total():
    from captum_shallowcam.attr._base import inter_layer_weights

    relevance = torch.ones(1, 3, 2, 2)
    term = torch.tensor([1.0, 0.0, -2.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    weights = inter_layer_weights(relevance, "geometric", term).flatten()
    torch.testing.assert_close(weights, torch.tensor([1.0, 0.0, 0.0]))  # sqrt(4 / 4)
    assert bool(torch.isfinite(weights).all())
    with pytest.raises(TypeError, match="needs the term"):
        inter_layer_weights(relevance, "geometric")


def test_relevance_cam_geometric_weights_use_the_activation_totals():
    from captum_shallowcam import LayerRelevanceCam
    from captum_shallowcam.attr import compute_layer_passes

    net = _small_signed_net()
    x = torch.randn(2, 3, 10, 10, generator=torch.Generator().manual_seed(0))
    layer = net[1]
    passes = compute_layer_passes(
        net, layer, x, target=[1, 3], initial_relevance="contrastive"
    )
    a, r = passes.activations[0], passes.relevances[0]
    total = a.sum((2, 3), keepdim=True)
    weights = (r.sum((2, 3), keepdim=True).clamp(min=0) / total).sqrt()
    weights = torch.where(total > 0, weights, torch.zeros_like(weights))
    expected = (weights * a).sum(1, keepdim=True).clamp(min=0)
    got = LayerRelevanceCam(net, layer).attribute(
        x, target=[1, 3], channel_weights="geometric"
    )
    torch.testing.assert_close(got, expected)


# ------------------------------------------------------- the both-signs mask
@pytest.mark.parametrize("c", [0, 1])
def test_layer_cam_both_signs_mask_hand_computed(c):
    """``mask="both-signs"`` is ReLU(G A): a negative activation under a negative
    gradient (channel 1 for class 0) counts as evidence."""
    net = BottleneckNet().eval()
    x = torch.randn(1, 1, 6, 6, generator=torch.Generator().manual_seed(c))
    a = F.conv2d(x, net.conv.weight)
    g = (net.fc.weight[c] / a[0, 0].numel()).view(1, -1, 1, 1).expand_as(a)
    expected = (g * a).clamp(min=0).sum(1, keepdim=True)
    got = LayerCam(net, net.conv).attribute(x, target=c, mask="both-signs")
    torch.testing.assert_close(got, expected)
    if c == 0:  # channel 1 has a negative gradient: the masks differ there
        sign_aware = LayerCam(net, net.conv).attribute(x, target=c, mask="sign-aware")
        assert bool((got >= sign_aware).all()) and not torch.allclose(got, sign_aware)


def _hand_clrp_case(c: int) -> tuple[nn.Module, Tensor, Tensor, Tensor]:
    """The net, input, signed activations at its conv and the CLRP relevance
    there for class ``c``, computed by hand (z+ through the pooled linear head,
    spread over positions in proportion to the activations)."""
    net = _positive_head_net()
    x = torch.randn(1, 1, 7, 7, generator=torch.Generator().manual_seed(5)) + 0.6
    a = F.conv2d(x, net.conv.weight)
    pooled = a.mean((2, 3))[0]

    def relevance_at_layer(k: int) -> Tensor:
        w = net.fc.weight[k]
        alpha = pooled * w / (pooled * w).sum()
        return a / a.sum((2, 3), keepdim=True) * alpha.view(1, -1, 1, 1)

    return net, x, a, (relevance_at_layer(c) - relevance_at_layer(1 - c)).clamp(min=0)


@pytest.mark.parametrize("c", [0, 1])
def test_shallow_cam_both_signs_hand_computed(c):
    """Both-signs: mask ReLU(G A), CLRP relevance summed over all positions,
    geometric weights."""
    net, x, a, r = _hand_clrp_case(c)
    alpha = r.sum((2, 3), keepdim=True).clamp(min=0)
    g = (net.fc.weight[c] / a[0, 0].numel()).view(1, -1, 1, 1)
    mask = (g * a).clamp(min=0)
    weights = (alpha / mask.sum((2, 3), keepdim=True)).sqrt()
    expected = (weights * mask).sum(1, keepdim=True).clamp(min=0)
    assert expected.abs().sum() > 0
    got = LayerShallowCam(net, net.conv).attribute(
        x, target=c, mask="both-signs", channel_weights="geometric"
    )
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("c", [0, 1])
def test_shallow_cam_mass_weights_hand_computed(c):
    """``channel_weights="mass"``: ReLU(alpha_k) / sum S_k, so that each channel
    adds up to exactly its relevance, spread by the both-signs mask."""
    net, x, a, r = _hand_clrp_case(c)
    alpha = r.sum((2, 3), keepdim=True).clamp(min=0)
    g = (net.fc.weight[c] / a[0, 0].numel()).view(1, -1, 1, 1)
    mask = (g * a).clamp(min=0)
    totals = mask.sum((2, 3), keepdim=True)
    weights = torch.where(totals > 0, alpha / totals, torch.zeros_like(totals))
    expected = (weights * mask).sum(1, keepdim=True).clamp(min=0)
    assert expected.abs().sum() > 0
    got = LayerShallowCam(net, net.conv).attribute(
        x, target=c, mask="both-signs", channel_weights="mass"
    )
    torch.testing.assert_close(got, expected)
    # each channel with some evidence contributes its relevance, no more
    has_evidence = (totals > 0).flatten()
    torch.testing.assert_close(got.sum(), alpha.flatten()[has_evidence].sum())
    registry = make_explainer(net, [net.conv], "shallowcam+both-signs+mass")
    torch.testing.assert_close(registry(x, torch.tensor([c]))[0], got)


def test_mass_weights_zero_where_the_term_has_no_positive_total():
    from captum_shallowcam.attr import inter_layer_weights

    relevance = torch.ones(1, 3, 2, 2)  # alpha = 4 in every channel
    term = torch.tensor([2.0, 0.0, -2.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    weights = inter_layer_weights(relevance, "mass", term).flatten()
    torch.testing.assert_close(weights, torch.tensor([0.5, 0.0, 0.0]))  # 4 / 8
    with pytest.raises(TypeError, match="needs the term"):
        inter_layer_weights(relevance, "mass")


@pytest.mark.parametrize("channel_weights", ["geometric", "mass"])
@pytest.mark.parametrize("c", [0, 1])
def test_shallow_cam_split_mask_hand_computed(c, channel_weights):
    """``mask="split"``: the positive-activation part ReLU(G) ReLU(A) and the
    negative-activation part ReLU(-G) ReLU(-A) of each channel, each weighted
    by the CLRP relevance on its own positions (with mass weights, the
    previous default)."""
    net, x, a, r = _hand_clrp_case(c)
    assert bool((a < 0).any()) and bool((a > 0).any())
    g = (net.fc.weight[c] / a[0, 0].numel()).view(1, -1, 1, 1)
    expected = torch.zeros_like(a[:, :1])
    for part, on in (
        (g.clamp(min=0) * a.clamp(min=0), a >= 0),
        ((-g).clamp(min=0) * (-a).clamp(min=0), a < 0),
    ):
        alpha = (r * on).sum((2, 3), keepdim=True).clamp(min=0)
        totals = part.sum((2, 3), keepdim=True)
        ratio = alpha / totals.clamp_min(1e-30)
        if channel_weights == "geometric":
            ratio = ratio.sqrt()
        weights = torch.where(totals > 0, ratio, torch.zeros_like(ratio))
        expected = expected + (weights * part).sum(1, keepdim=True)
    expected = expected.clamp(min=0)
    assert expected.abs().sum() > 0
    got = LayerShallowCam(net, net.conv).attribute(
        x, target=c, mask="split", channel_weights=channel_weights
    )
    torch.testing.assert_close(got, expected)
    registry = make_explainer(net, [net.conv], f"shallowcam+split+{channel_weights}")
    torch.testing.assert_close(registry(x, torch.tensor([c]))[0], got)
    if channel_weights == "mass":
        previous = LayerShallowCam(net, net.conv).attribute(
            x, target=c, mask="split", channel_weights="mass"
        )
        torch.testing.assert_close(previous, expected)


def _mixed_gradient_net() -> nn.Module:
    """A signed layer (BatchNorm) under a convolution and a ReLU, so that its
    gradient changes sign within a channel."""
    torch.manual_seed(5)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.Conv2d(6, 6, 3, padding=1),
        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 4),
    ).eval()  # fmt: skip


def test_split_gated_mask_hand_computed():
    """``mask="split-gated"``, the default with mass weights: the split mask,
    each part weighted by the relevance only where that part is positive (G A >
    0 with the part's activation sign), not on all positions of the
    activation's sign."""
    from captum_shallowcam.attr import compute_layer_passes

    net = _mixed_gradient_net()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    t = torch.tensor([1, 2])
    passes = compute_layer_passes(net, [net[1]], x, target=t, check_conservation=False)
    a, g, r = passes.activations[0], passes.gradients[0], passes.relevances[0]
    # the gradient has both signs within channels, on both activation signs
    assert bool(((g > 0) & (a > 0)).any()) and bool(((g < 0) & (a > 0)).any())
    assert bool(((g < 0) & (a < 0)).any()) and bool(((g > 0) & (a < 0)).any())
    expected = torch.zeros_like(a[:, :1])
    for part in (
        g.clamp(min=0) * a.clamp(min=0),
        (-g).clamp(min=0) * (-a).clamp(min=0),
    ):
        alpha = (r * (part > 0)).sum((2, 3), keepdim=True).clamp(min=0)
        totals = part.sum((2, 3), keepdim=True)
        weights = torch.where(
            totals > 0, alpha / totals.clamp_min(1e-30), torch.zeros_like(totals)
        )
        expected = expected + (weights * part).sum(1, keepdim=True)
    expected = expected.clamp(min=0)
    got = LayerShallowCam(net, net[1]).attribute(x, target=t, mask="split-gated")
    torch.testing.assert_close(got, expected)
    default = LayerShallowCam(net, net[1]).attribute(x, target=t)
    torch.testing.assert_close(default, expected)
    shallowcam = make_explainer(net, [net[1]], "shallowcam")
    torch.testing.assert_close(shallowcam(x, t)[0], expected)
    split = LayerShallowCam(net, net[1]).attribute(x, target=t, mask="split")
    assert not torch.allclose(got, split)  # the gate changes the weights here
    registry = make_explainer(net, [net[1]], "shallowcam+split-gated+mass")
    torch.testing.assert_close(registry(x, t)[0], got)


def test_split_gated_equals_split_where_each_channel_has_one_gradient_sign():
    """Under global pooling and a linear head the gradient is constant per
    channel: a part is then positive wherever its activation sign holds, and the
    gate changes nothing."""
    net, x, _, _ = _hand_clrp_case(0)
    explainer = LayerShallowCam(net, net.conv)
    gated = explainer.attribute(x, target=0, mask="split-gated")
    assert gated.abs().sum() > 0
    torch.testing.assert_close(gated, explainer.attribute(x, target=0, mask="split"))


@pytest.mark.parametrize("mask", ["split", "split-gated", "split-subtracted"])
def test_split_mask_refused_where_it_has_no_meaning(mask):
    net = _positive_head_net()
    x = torch.randn(1, 1, 7, 7)
    with pytest.raises(ValueError, match="variant='v1'"):
        LayerShallowCam(net, net.conv).attribute(x, target=0, mask=mask, variant="v3")
    with pytest.raises(ValueError, match="mask must be one of"):
        LayerCam(net, net.conv).attribute(x, target=0, mask=mask)


def test_split_mask_equals_both_signs_on_relu_outputs():
    torch.manual_seed(2)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU6(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5),
    ).eval()  # fmt: skip
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    explainer = LayerShallowCam(net, [net[1], net[3]])
    for variant in ("v1", "v2"):
        split = explainer.attribute(x, target=[2, 4], mask="split", variant=variant)
        both = explainer.attribute(x, target=[2, 4], mask="both-signs", variant=variant)
        for s_map, b_map in zip(split, both):
            assert s_map.abs().sum() > 0
            torch.testing.assert_close(s_map, b_map)


@pytest.mark.parametrize("variant", ["v1", "v2", "v3"])
def test_both_signs_equals_the_plain_mask_on_relu_outputs(variant):
    torch.manual_seed(2)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU6(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5),
    ).eval()  # fmt: skip
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    layers = [net[1], net[3]]
    explainer = LayerShallowCam(net, layers)
    for kwargs in ({}, {"variant": variant}):
        plain = explainer.attribute(x, target=[2, 4], mask="plain", **kwargs)
        both = explainer.attribute(x, target=[2, 4], mask="both-signs", **kwargs)
        for p, b in zip(plain, both):
            assert p.abs().sum() > 0
            torch.testing.assert_close(p, b)
    for p, b in zip(
        LayerCam(net, layers).attribute(x, target=[2, 4]),
        LayerCam(net, layers).attribute(x, target=[2, 4], mask="both-signs"),
    ):
        torch.testing.assert_close(p, b)


@pytest.mark.parametrize("cls", [LayerCam, LayerShallowCam])
def test_mask_and_relu_activations_are_one_choice(cls):
    net = BottleneckNet().eval()
    x = torch.randn(1, 1, 6, 6)
    explainer = cls(net, net.conv)
    with pytest.raises(ValueError, match="Give mask= or relu_activations=, not both"):
        explainer.attribute(x, target=0, mask="plain", relu_activations=True)
    with pytest.raises(ValueError, match="mask must be one of 'plain', 'sign-aware'"):
        explainer.attribute(x, target=0, mask="signs")
    torch.testing.assert_close(
        explainer.attribute(x, target=0, relu_activations=True),
        explainer.attribute(x, target=0, mask="sign-aware"),
    )


def test_the_masks_screen_builds_the_registered_methods_maps():
    """benchmarks/masks_screen.py builds five maps from one set of passes; each
    equals the map of the registered method of the same name."""
    from captum_shallowcam.attr import compute_layer_passes
    from captum_shallowcam.methods import make_explainer

    screen = _masks_screen()
    net = _small_signed_net()
    x, t = torch.randn(3, 3, 8, 8), torch.tensor([0, 3, 1])
    passes = compute_layer_passes(net, [net[2]], x, target=t, check_conservation=False)
    built = screen.maps(
        passes.activations[0], passes.gradients[0], passes.relevances[0]
    )
    assert set(built) == set(screen.METHODS)
    for name, layer_map in built.items():
        (expected,) = make_explainer(net, [net[2]], name)(x, t)
        torch.testing.assert_close(layer_map, expected, rtol=1e-5, atol=1e-7)


def _masks_screen():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "masks_screen.py"
    spec = importlib.util.spec_from_file_location("masks_screen", path)
    screen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(screen)
    return screen


def _diagnostics_by_position(a, g, r):
    """The three diagnostic maps of benchmarks/masks_screen.py, one position and
    one channel at a time, from their formulas (an independent reference)."""
    n, k, h, w = a.shape
    out = {name: torch.zeros(n, 1, h, w, dtype=torch.float64) for name in
           ("subtraction", "signed", "quadrant-mass")}  # fmt: skip
    for i in range(n):
        for c in range(k):
            cells = [(y, x) for y in range(h) for x in range(w)]
            A = {p: float(a[i, c][p]) for p in cells}
            G = {p: float(g[i, c][p]) for p in cells}
            R = {p: float(r[i, c][p]) for p in cells}
            # a+g+, a-g-, a-g+: each part's weight is the relevance where the
            # part is positive over the part's total (0 when it has none).
            parts = {
                "pos": {p: max(G[p], 0) * max(A[p], 0) for p in cells},
                "neg": {p: max(-G[p], 0) * max(-A[p], 0) for p in cells},
                "sub": {p: max(G[p], 0) * max(-A[p], 0) for p in cells},
            }
            wt = {}
            for name, part in parts.items():
                total = sum(part.values())
                mass = max(sum(R[p] for p in cells if part[p] > 0), 0)
                wt[name] = mass / total if total > 0 else 0.0
            for p in cells:
                side = wt["pos"] if A[p] >= 0 else wt["neg"]
                out["subtraction"][i, 0][p] += (
                    wt["pos"] * parts["pos"][p] if A[p] >= 0 else side * G[p] * A[p]
                )
                out["signed"][i, 0][p] += side * G[p] * A[p]
                out["quadrant-mass"][i, 0][p] += (
                    wt["pos"] * parts["pos"][p]
                    + wt["neg"] * parts["neg"][p]
                    - wt["sub"] * parts["sub"][p]
                )
    return {f"diagnostic:{k}": torch.relu(v) for k, v in out.items()}


def test_the_masks_screens_diagnostic_maps_follow_their_formulas():
    """The diagnostic maps (LayerCAM's subtraction added to the default's
    weights) against a position-by-position reference, and on a layer with
    non-negative activations the subtraction readings equal the default."""
    screen = _masks_screen()
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(2, 3, 4, 5, generator=gen, dtype=torch.float64)
    g = torch.randn(2, 3, 4, 5, generator=gen, dtype=torch.float64)
    r = torch.rand(2, 3, 4, 5, generator=gen, dtype=torch.float64)
    built = screen.diagnostic_maps(a, g, r)
    assert set(built) == set(screen.DIAGNOSTICS)
    expected = _diagnostics_by_position(a, g, r)
    for name in screen.DIAGNOSTICS:
        torch.testing.assert_close(built[name], expected[name])
        assert built[name].abs().sum() > 0
    relu_a = a.abs()
    default = screen.maps(relu_a, g, r)["shallowcam+split-gated+mass"]
    relu_built = screen.diagnostic_maps(relu_a, g, r)
    torch.testing.assert_close(relu_built["diagnostic:subtraction"], default)
    torch.testing.assert_close(relu_built["diagnostic:quadrant-mass"], default)
    assert not torch.allclose(built["diagnostic:subtraction"], screen.maps(a, g, r)[
        "shallowcam+split-gated+mass"])  # fmt: skip


def test_split_subtracted_mask_follows_the_position_by_position_reference():
    """``mask="split-subtracted"``: the default less LayerCAM's subtracted part
    ReLU(G) ReLU(-A), weighted by the relevance where that part is positive;
    the package's map equals the reference of the masks screen's
    ``diagnostic:quadrant-mass`` on a layer whose gradient and activation take
    both signs, and differs from the default there."""
    from captum_shallowcam.attr import compute_layer_passes

    net = _mixed_gradient_net()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    t = torch.tensor([0, 3])
    passes = compute_layer_passes(net, [net[1]], x, target=t, check_conservation=False)
    a, g, r = passes.activations[0], passes.gradients[0], passes.relevances[0]
    assert bool(((g > 0) & (a < 0)).any())  # the subtracted part is there
    expected = _diagnostics_by_position(a.double(), g.double(), r.double())[
        "diagnostic:quadrant-mass"
    ]
    got = LayerShallowCam(net, net[1]).attribute(x, target=t, mask="split-subtracted")
    assert got.abs().sum() > 0
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-6)
    default = LayerShallowCam(net, net[1]).attribute(x, target=t)
    assert not torch.allclose(got, default)
    registry = make_explainer(net, [net[1]], "shallowcam+split-subtracted+mass")
    torch.testing.assert_close(registry(x, t)[0], got)
    # on a ReLU output there is no negative activation to subtract
    on_relu = LayerShallowCam(net, net[3])
    relu_map = on_relu.attribute(x, target=t, mask="split-subtracted")
    assert relu_map.abs().sum() > 0
    torch.testing.assert_close(relu_map, on_relu.attribute(x, target=t))
