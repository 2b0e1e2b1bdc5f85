"""Behaviour of LayerCam, LayerRelevanceCam and LayerShallowCam.

Expected maps are computed in the tests, by hand (literal numbers, derivations in
the comments) or with plain tensor operations (``tests/_reference.py``), never
with the package's own engine.
"""

from __future__ import annotations

import warnings

import _reference as ref
import models
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from captum_shallowcam import LayerCam, LayerRelevanceCam, LayerShallowCam
from captum_shallowcam.rules import IdentityRule

METHODS = [LayerCam, LayerRelevanceCam, LayerShallowCam]


# ---------------------------------------------------------------- the tiny net
class OneConvNet(nn.Module):
    """conv(1->2, 3x3, integer weights) -> ReLU -> global avg pool -> linear(2->2)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, bias=False)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            diagonal = [[1.0, 0, 0], [0, 1, 0], [0, 0, 1]]
            laplace = [[0.0, 1, 0], [1, -2, 1], [0, 1, 0]]
            self.conv.weight.copy_(torch.tensor([[diagonal], [laplace]]))
            self.fc.weight.copy_(torch.tensor([[1.0, -1.0], [2.0, 1.0]]))
            self.fc.bias.copy_(torch.tensor([0.5, -0.5]))  # ignored by z+

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.flatten(self.pool(self.relu(self.conv(x)))))


# 1 x 1 x 5 x 5. By hand, A = ReLU(conv(x)) at the ReLU's output is
#   A_0 = [[1, 0, 5], [0, 1, 0], [5, 0, 1]]  (sum 13, mean p0 = 13/9)
#   A_1 = [[0, 3, 0], [3, 2, 3], [0, 3, 0]]  (sum 14, mean p1 = 14/9)
# and the logits y = W p + b, W = [[1, -1], [2, 1]], so dy_c/dA_k = W[c, k] / 9.
X_TINY = torch.tensor(
    [
        [1.0, 0, 2, 0, 1],
        [0, 1, 0, 1, 0],
        [2, 0, -1, 0, 2],
        [0, 1, 0, 1, 0],
        [1, 0, 2, 0, 1],
    ]
).view(1, 1, 5, 5)
A0 = torch.tensor([[1.0, 0, 5], [0, 1, 0], [5, 0, 1]])
A1 = torch.tensor([[0.0, 3, 0], [3, 2, 3], [0, 3, 0]])


def _map(t: Tensor) -> Tensor:
    return t.view(1, 1, 3, 3)


@pytest.fixture
def tiny() -> OneConvNet:
    return OneConvNet().eval()


def test_tiny_net_activation_is_the_hand_computed_one(tiny):
    with torch.no_grad():
        a = tiny.relu(tiny.conv(X_TINY))
    ref.assert_close(a, torch.stack([A0, A1])[None])


def test_layer_cam_hand_computed_on_tiny_net(tiny):
    cam = LayerCam(tiny, tiny.relu)
    # class 0: G = [1/9, -1/9] -> ReLU(G) keeps channel 0 only: A_0 / 9
    ref.assert_close(cam.attribute(X_TINY, target=0), _map(A0 / 9))
    # class 1: G = [2/9, 1/9] -> (2 A_0 + A_1) / 9
    expected = torch.tensor([[2.0, 3, 10], [3, 4, 3], [10, 3, 2]]) / 9
    ref.assert_close(cam.attribute(X_TINY, target=1), _map(expected))


def test_layer_cam_tanh_scaling_hand_computed(tiny):
    cam = LayerCam(tiny, tiny.relu).attribute(X_TINY, target=1, scaling="tanh")
    m = torch.tensor([[2.0, 3, 10], [3, 4, 3], [10, 3, 2]])
    ref.assert_close(cam, _map(torch.tanh(2 * m / 10)))


def test_layer_cam_per_channel_maps_hand_computed(tiny):
    """``attr_dim_summation=False`` keeps the channels, as in Captum's LayerGradCam."""
    cam = LayerCam(tiny, tiny.relu)
    # class 1: G = [2/9, 1/9] -> channels 2 A_0 / 9 and A_1 / 9
    per_channel = cam.attribute(X_TINY, target=1, attr_dim_summation=False)
    ref.assert_close(per_channel, torch.stack([2 * A0 / 9, A1 / 9])[None])
    # class 0: G = [1/9, -1/9] -> ReLU(G) drops channel 1 entirely
    per_channel = cam.attribute(X_TINY, target=0, attr_dim_summation=False)
    ref.assert_close(per_channel, torch.stack([A0 / 9, torch.zeros(3, 3)])[None])
    ref.assert_close(per_channel.sum(1, keepdim=True), cam.attribute(X_TINY, target=0))


def test_has_convergence_delta_where_attribute_returns_one(tiny):
    assert not LayerCam(tiny, tiny.relu).has_convergence_delta()
    for method in (LayerRelevanceCam, LayerShallowCam):
        explainer = method(tiny, tiny.relu)
        assert explainer.has_convergence_delta()
        for initial_relevance in ("contrastive", "target", "clrp"):
            _, delta = explainer.attribute(
                X_TINY,
                target=0,
                initial_relevance=initial_relevance,
                return_convergence_delta=True,
            )
            assert delta.shape == (1,), (method.__name__, initial_relevance)


def test_relevance_cam_target_relevance_hand_computed(tiny):
    # class 1, one-hot relevance, z+ through the linear layer (w+ row = [2, 1]):
    #   alpha_k = p_k w+_1k / (2 p0 + p1)  ->  alpha = [26/40, 14/40] = [0.65, 0.35]
    # then the average pool passes R_k on in proportion to A_k (sum over space
    # stays alpha_k). Map = 0.65 A_0 + 0.35 A_1.
    maps, delta = LayerRelevanceCam(tiny, tiny.relu).attribute(
        X_TINY, target=1, initial_relevance="target", return_convergence_delta=True
    )
    ref.assert_close(maps, _map(0.65 * A0 + 0.35 * A1))
    ref.assert_close(delta, torch.zeros(1), atol=ref.DELTA_ATOL)


def test_relevance_cam_contrastive_relevance_hand_computed(tiny):
    # class 0, C = 2: R_logits = [1, -1/2]; z+_0 = p0 (w+ row 0 = [1, 0]),
    # z+_1 = 2 p0 + p1 = 40/9:
    #   alpha_0 = p0 (1 / z0 + 2 (-1/2) / z1) = 1 - 13/40 = 0.675
    #   alpha_1 = p1 (0 + 1 (-1/2) / z1)      = -7/40   = -0.175
    # sum = 0.5 = sum of the initial relevance (conserved).
    cam = LayerRelevanceCam(tiny, tiny.relu)
    signed = cam.attribute(X_TINY, target=0, relu_attributions=False)
    ref.assert_close(signed, _map(0.675 * A0 - 0.175 * A1))
    expected = torch.tensor([[0.675, 0, 3.375], [0, 0.325, 0], [3.375, 0, 0.675]])
    ref.assert_close(cam.attribute(X_TINY, target=0), _map(expected))
    positive = cam.attribute(X_TINY, target=0, channel_weights="positive")
    ref.assert_close(positive, _map(0.675 * A0))
    _, delta = cam.attribute(X_TINY, target=0, return_convergence_delta=True)
    ref.assert_close(delta, torch.zeros(1), atol=ref.DELTA_ATOL)


def test_relevance_cam_clrp_hand_computed(tiny):
    # class 0: from e_0 alpha = [1, 0]; from the dual e_1 alpha = [0.65, 0.35];
    # per position R_k = A_k / sum(A_k) * alpha_k, so relu(R_t - R_d) keeps
    # 0.35 A_0 / 13 on channel 0 and nothing on channel 1: map = 0.35 A_0.
    maps, delta = LayerRelevanceCam(tiny, tiny.relu).attribute(
        X_TINY, target=0, initial_relevance="clrp", return_convergence_delta=True
    )
    ref.assert_close(maps, _map(0.35 * A0))
    # CLRP is one pass of e_0 - dual (the rules are linear in the relevance); its
    # delta is that pass's conservation, before the final ReLU.
    ref.assert_close(delta, torch.zeros(1), atol=ref.DELTA_ATOL)


def test_shallow_cam_v1_hand_computed(tiny):
    cam = LayerShallowCam(tiny, tiny.relu)

    def v1(target: int, initial_relevance: str, channel_weights: str) -> Tensor:
        return cam.attribute(
            X_TINY,
            target=target,
            variant="v1",
            initial_relevance=initial_relevance,
            channel_weights=channel_weights,
        )

    # class 1, target relevance: 0.65 * (2/9) A_0 + 0.35 * (1/9) A_1
    ref.assert_close(v1(1, "target", "positive"), _map((1.3 * A0 + 0.35 * A1) / 9))
    # the same with the flatter sqrt weights: sqrt(0.65) (2/9) A_0 + sqrt(0.35) (1/9) A_1
    ref.assert_close(
        v1(1, "target", "sqrt"), _map((2 * 0.65**0.5 * A0 + 0.35**0.5 * A1) / 9)
    )
    # geometric weights: channel k's mask S_k sums to s_k (2 * 13 / 9 and 14 / 9),
    # w_k = sqrt(alpha_k / s_k), so each channel adds up to sqrt(alpha_k s_k)
    w0, w1 = (0.65 / (2 * 13 / 9)) ** 0.5, (0.35 / (14 / 9)) ** 0.5
    ref.assert_close(v1(1, "target", "geometric"), _map((w0 * 2 * A0 + w1 * A1) / 9))
    # class 0, contrastive: ReLU(G_1) = 0, so only 0.675 * (1/9) A_0 remains
    ref.assert_close(v1(0, "contrastive", "signed"), _map(0.675 * A0 / 9))
    # class 0, the defaults (CLRP, mass weights; on this ReLU output the split
    # mask has no negative part and equals the plain one): alpha = [0.35, 0] (see
    # the CLRP test above) and S_0 = A_0 / 9 sums to 13 / 9, so channel 0 adds up
    # to 0.35: 0.35 * 9 / 13 * A_0 / 9 remains
    ref.assert_close(cam.attribute(X_TINY, target=0), _map(0.35 * 9 / 13 * A0 / 9))
    # the 0.2 default (sign-aware mask, geometric weights): sqrt(0.35 * 9 / 13)
    ref.assert_close(
        cam.attribute(X_TINY, target=0, mask="sign-aware", channel_weights="geometric"),
        _map((0.35 * 9 / 13) ** 0.5 * A0 / 9),
    )


def test_shallow_cam_v3_hand_computed(tiny):
    # class 1: M = (2 A_0 + A_1) / 9 = [[2,3,10],[3,4,3],[10,3,2]] / 9, scaled to
    # [0, 1]: (9 M - 2) / 8; times 0.65 A_0 + 0.35 A_1.
    v3 = LayerShallowCam(tiny, tiny.relu).attribute(
        X_TINY,
        target=1,
        variant="v3",
        initial_relevance="target",
        channel_weights="positive",
    )
    mask = (torch.tensor([[2.0, 3, 10], [3, 4, 3], [10, 3, 2]]) - 2) / 8
    ref.assert_close(v3, _map(mask * (0.65 * A0 + 0.35 * A1)))


def _one_conv_reference(model: OneConvNet, x: Tensor, c: int, kind: str):
    """Activation, gradient and relevance at ``model.relu`` with plain tensor ops."""
    w, v = model.conv.weight.detach(), model.fc.weight.detach()
    a = torch.relu(F.conv2d(x, w))
    hw = a.shape[2] * a.shape[3]
    g = (v[c] / hw).view(1, -1, 1, 1).expand_as(a)
    r_logits = ref.initial_relevance(kind, torch.tensor([c]), v.shape[0])
    r = ref.global_avg_pool_prop(a, ref.zplus_linear(a.mean((2, 3)), v, r_logits))
    return a, g, r


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("kind", ["target", "contrastive"])
@pytest.mark.parametrize("c", [0, 1])
def test_tiny_net_maps_match_plain_tensor_computation(tiny, seed, kind, c):
    x = torch.randn(1, 1, 5, 5, generator=torch.Generator().manual_seed(seed)) + 0.5
    a, g, r = _one_conv_reference(tiny, x, c, kind)
    ref.assert_close(
        LayerCam(tiny, tiny.relu).attribute(x, target=c), ref.layer_cam_map(a, g)
    )
    rcam = LayerRelevanceCam(tiny, tiny.relu).attribute(
        x, target=c, initial_relevance=kind, relu_attributions=False
    )
    ref.assert_close(rcam, ref.relevance_cam_map(a, r, relu=False), rtol=ref.REL_RTOL)
    shallow = LayerShallowCam(tiny, tiny.relu)
    signed = {"initial_relevance": kind, "channel_weights": "signed"}
    v1 = shallow.attribute(x, target=c, relu_attributions=False, **signed)
    ref.assert_close(v1, ref.shallow_cam_v1_map(a, g, r, relu=False), rtol=ref.REL_RTOL)
    v3 = shallow.attribute(x, target=c, variant="v3", **signed)
    ref.assert_close(v3, ref.shallow_cam_v3_map(a, g, r), rtol=ref.REL_RTOL)


# ---------------------------------------------------------- v2 on two layers
class TwoConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 3, padding=1, bias=False)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(2, 2, 3, bias=False)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.conv1.weight.copy_(
                torch.tensor(
                    [
                        [[[1.0, 0, -1], [1, 2, 0], [0, 1, 1]]],
                        [[[0.0, 1, 0], [-1, 1, 2], [1, 0, 1]]],
                    ]
                )
            )
            self.conv2.weight.copy_(
                torch.tensor(
                    [
                        [
                            [[1.0, -1, 0], [0, 1, 1], [1, 0, 0]],
                            [[0.0, 1, 0], [1, 0, -1], [0, 2, 0]],
                        ],
                        [
                            [[0.0, 0, 1], [1, -1, 0], [0, 1, 1]],
                            [[1.0, 0, 1], [0, 1, 0], [-1, 0, 1]],
                        ],
                    ]
                )
            )
            self.fc.weight.copy_(torch.tensor([[1.0, 2.0], [-1.0, 1.0]]))

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu1(self.conv1(x))
        x = self.relu2(self.conv2(x))
        return self.fc(self.flatten(self.pool(x)))


@pytest.mark.parametrize("c", [0, 1])
def test_shallow_cam_v2_is_one_lrp_step_from_next_layer_evidence(c):
    model = TwoConvNet().eval()
    x = X_TINY + 0.5
    w1, w2 = model.conv1.weight.detach(), model.conv2.weight.detach()
    v = model.fc.weight.detach()
    a1 = torch.relu(F.conv2d(x, w1, padding=1))  # 1 x 2 x 5 x 5
    z2 = F.conv2d(a1, w2)
    a2 = torch.relu(z2)  # 1 x 2 x 3 x 3
    g2 = (v[c] / 9).view(1, -1, 1, 1).expand_as(a2)
    g1 = F.conv_transpose2d(g2 * (z2 > 0), w2)  # the gradient at relu1's output
    # upper layer (deepest of the list): v1 weights, relevance from the logits
    r_logits = ref.initial_relevance("contrastive", torch.tensor([c]), 2)
    r2 = ref.global_avg_pool_prop(a2, ref.zplus_linear(a2.mean((2, 3)), v, r_logits))
    # lower layer: one z+ step through conv2 from E = ReLU(G2) A2 at relu2's output
    evidence = torch.relu(g2) * a2
    r1 = ref.zplus_conv2d(a1, w2, evidence)
    as_in_reference = {
        "initial_relevance": "contrastive",
        "channel_weights": "signed",
        "mask": "plain",  # the reference's form (the next layer's evidence too)
    }
    lower, upper = LayerShallowCam(model, [model.relu1, model.relu2]).attribute(
        x, target=c, variant="v2", relu_attributions=False, **as_in_reference
    )
    ref.assert_close(
        upper, ref.shallow_cam_v1_map(a2, g2, r2, relu=False), rtol=ref.REL_RTOL
    )
    ref.assert_close(
        lower, ref.shallow_cam_v1_map(a1, g1, r1, relu=False), rtol=ref.REL_RTOL
    )
    # the lower map really uses the evidence, not the relevance from the logits
    from_logits = LayerShallowCam(model, [model.relu1, model.relu2]).attribute(
        x, target=c, variant="v1", relu_attributions=False, **as_in_reference
    )[0]
    assert not torch.allclose(lower, from_logits)


def test_shallow_cam_v2_list_order_does_not_matter():
    model = TwoConvNet().eval()
    x = X_TINY + 0.5
    lower, upper = LayerShallowCam(model, [model.relu1, model.relu2]).attribute(
        x, target=1, variant="v2"
    )
    upper_r, lower_r = LayerShallowCam(model, [model.relu2, model.relu1]).attribute(
        x, target=1, variant="v2"
    )
    ref.assert_close(lower_r, lower)
    ref.assert_close(upper_r, upper)


def test_shallow_cam_v2_single_layer_falls_back_to_v1():
    model = TwoConvNet().eval()
    x = X_TINY + 0.5
    cam = LayerShallowCam(model, model.relu1)
    ref.assert_close(
        cam.attribute(x, target=0, variant="v2"),
        cam.attribute(x, target=0, variant="v1"),
    )


# ------------------------------------------------- equal weights -> LayerCAM
def test_equal_weights_reduce_to_layercam():
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 3),
    ).eval()
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        pooled = model[:4](x)[0]
        assert bool((pooled > 0).all())
        # With one-hot relevance alpha_k = p_k w+_ck / sum_k' p_k' w+_ck': the
        # weights w_ck = 1 / p_k make every alpha_k = 1/6, while the gradients
        # w_ck / 64 still differ from channel to channel.
        model[4].weight[1] = 1 / pooled
    layer_cam = LayerCam(model, model[1]).attribute(x, target=1)
    shallow = LayerShallowCam(model, model[1]).attribute(
        x, target=1, initial_relevance="target", channel_weights="positive"
    )
    assert float(layer_cam.max()) > 0
    ref.assert_close(shallow / shallow.max(), layer_cam / layer_cam.max())
    # the scale factor is the common alpha, 1/6 (the relevance sums to 1)
    ref.assert_close(shallow, layer_cam / 6, rtol=1e-5)
    # with sqrt weights, the common weight is sqrt(1/6)
    flat = LayerShallowCam(model, model[1]).attribute(
        x, target=1, initial_relevance="target", channel_weights="sqrt"
    )
    ref.assert_close(flat, layer_cam / 6**0.5, rtol=1e-5)
    # the channel weights are equal: the Relevance-CAM map is the channel mean
    rcam = LayerRelevanceCam(model, model[1]).attribute(
        x, target=1, initial_relevance="target", relu_attributions=False
    )
    with torch.no_grad():
        activation = model[:2](x)
    ref.assert_close(rcam, activation.sum(1, keepdim=True) / 6)


# -------------------------------------- LayerCam against a hook-based reference
@pytest.fixture(scope="module")
def vgg16() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.vgg16(weights=None).eval()


@pytest.mark.parametrize("layer_name", ["layer1", "layer3"])
def test_layer_cam_matches_hook_reference_resnet18(resnet18, layer_name):
    x = torch.randn(2, 3, 64, 64)
    layer = getattr(resnet18, layer_name)
    expected = ref.hooked_layer_cam(resnet18, layer, x, [3, 7])
    actual = LayerCam(resnet18, layer).attribute(x, target=[3, 7])
    assert float(expected.max()) > 0
    ref.assert_close(actual, expected, rtol=1e-4)


def test_layer_cam_matches_hook_reference_vgg16(vgg16):
    x = torch.randn(1, 3, 64, 64)
    layer = vgg16.features[4]
    expected = ref.hooked_layer_cam(vgg16, layer, x, 11)
    actual = LayerCam(vgg16, layer).attribute(x, target=11)
    assert actual.shape == (1, 1, 32, 32)
    assert float(expected.max()) > 0
    ref.assert_close(actual, expected, rtol=1e-4)


def test_layer_cam_activation_survives_a_following_inplace_relu():
    # The conv's output is overwritten by the in-place ReLU after it; the map
    # must use the conv's output as it was (with its negative values).
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    ).eval()
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        conv_out = model[0](x)
    assert bool((conv_out < 0).any())
    with torch.enable_grad():
        z = conv_out.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(model[1:](z.clone())[0, 0], z)
    actual = LayerCam(model, model[0]).attribute(x, target=0, relu_attributions=False)
    ref.assert_close(actual, (torch.relu(g) * conv_out).sum(1, keepdim=True))


# ----------------------------------------------- batches and per-example targets
def _all_maps(model, layer, x, target):
    return [
        LayerCam(model, layer).attribute(x, target=target),
        LayerRelevanceCam(model, layer).attribute(x, target=target),
        LayerShallowCam(model, layer).attribute(x, target=target),
        LayerShallowCam(model, layer).attribute(x, target=target, variant="v3"),
    ]


def test_batch_equals_one_by_one_small_vgg(small_vgg):
    x = torch.randn(3, 3, 8, 8)
    targets = [0, 3, 1]
    batch = _all_maps(small_vgg, small_vgg.features[2], x, targets)
    for i in range(3):
        single = _all_maps(small_vgg, small_vgg.features[2], x[i : i + 1], targets[i])
        for b, s in zip(batch, single):
            ref.assert_close(b[i : i + 1], s, rtol=1e-5)


def test_batch_equals_one_by_one_resnet18(resnet18):
    x = torch.randn(2, 3, 64, 64)
    targets = torch.tensor([5, 900])
    batch = _all_maps(resnet18, resnet18.layer2, x, targets)
    for i in range(2):
        single = _all_maps(resnet18, resnet18.layer2, x[i : i + 1], int(targets[i]))
        for b, s in zip(batch, single):
            assert float(s.max()) > 0
            ref.assert_close(b[i : i + 1], s, rtol=1e-4)


@pytest.mark.parametrize("method", METHODS)
def test_target_as_int_list_and_tensor_agree(small_vgg, method):
    x = torch.randn(2, 3, 8, 8)
    cam = method(small_vgg, small_vgg.features[4])
    as_int = cam.attribute(x, target=2)
    ref.assert_close(cam.attribute(x, target=[2, 2]), as_int)
    ref.assert_close(cam.attribute(x, target=torch.tensor([2, 2])), as_int)
    ref.assert_close(cam.attribute(x, target=torch.tensor(2)), as_int)


@pytest.mark.parametrize("method", METHODS)
def test_per_example_targets_differ_where_targets_differ(small_vgg, method):
    x = torch.randn(1, 3, 8, 8).expand(3, 3, 8, 8).contiguous()
    cam = method(small_vgg, small_vgg.features[1])
    maps = cam.attribute(x, target=torch.tensor([0, 4, 0]))
    ref.assert_close(maps[0], maps[2])
    assert not torch.allclose(maps[0], maps[1], atol=ref.DELTA_ATOL)
    ref.assert_close(maps[1:2], cam.attribute(x[:1], target=4))
    ref.assert_close(maps[0:1], cam.attribute(x[:1], target=[0]))


@pytest.mark.parametrize("method", METHODS)
def test_target_none_explains_the_predicted_class(small_vgg, method):
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        predicted = small_vgg(x).argmax(1)
    cam = method(small_vgg, small_vgg.features[4])
    ref.assert_close(cam.attribute(x), cam.attribute(x, target=predicted))


@pytest.mark.parametrize("method", METHODS)
def test_list_of_layers_equals_single_layer_calls(small_vgg, method):
    x = torch.randn(2, 3, 8, 8)
    layers = [small_vgg.features[1], small_vgg.features[2], small_vgg.features[4]]
    together = method(small_vgg, layers).attribute(x, target=[1, 2])
    assert isinstance(together, list) and len(together) == 3
    for layer, maps in zip(layers, together):
        ref.assert_close(maps, method(small_vgg, layer).attribute(x, target=[1, 2]))


@pytest.mark.parametrize("method", METHODS)
def test_attribute_to_layer_input(small_vgg, method):
    # The input of features[3] (conv 2) is the output of features[2] (max-pool).
    x = torch.randn(2, 3, 8, 8)
    via_input = method(small_vgg, small_vgg.features[3]).attribute(
        x, target=1, attribute_to_layer_input=True
    )
    via_output = method(small_vgg, small_vgg.features[2]).attribute(x, target=1)
    ref.assert_close(via_input, via_output)


def test_additional_forward_args_are_passed():
    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = models.SmallVgg()

        def forward(self, x: Tensor, scale: float) -> Tensor:
            return self.net(x * scale)

    torch.manual_seed(0)
    model = Scaled().eval()
    x = torch.randn(1, 3, 8, 8)
    layer = model.net.features[2]
    for method in METHODS:
        with_arg = method(model, layer).attribute(
            x, target=1, additional_forward_args=(2.0,)
        )
        direct = method(model.net, layer).attribute(2 * x, target=1)
        ref.assert_close(with_arg, direct)


# ----------------------------------------------- the model is left as it was
@pytest.fixture
def bn_model() -> nn.Module:
    torch.manual_seed(2)
    model = models.SmallVggBN()
    with torch.no_grad():
        for bn in (model.features[1], model.features[5]):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(-1.0, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
    return model


def _calls(model: nn.Module):
    """One successful call per method and option that touches a new code path."""
    layer = model.features[3]
    x = torch.randn(2, 3, 8, 8)
    return [
        lambda: LayerCam(model, layer).attribute(x, target=1),
        lambda: LayerRelevanceCam(model, layer).attribute(x, target=[1, 2]),
        lambda: LayerRelevanceCam(model, layer).attribute(x, initial_relevance="clrp"),
        lambda: LayerShallowCam(model, layer).attribute(x, target=0, variant="v3"),
        lambda: LayerShallowCam(model, [model.features[2], layer]).attribute(
            x, target=0, variant="v2"
        ),
    ]


def _failing_calls(model: nn.Module):
    """Calls that raise after (or during) the hooked forward pass."""
    layer = model.features[3]
    x = torch.randn(2, 3, 8, 8)
    return [
        lambda: LayerCam(model, layer).attribute(x, target=99),
        lambda: LayerRelevanceCam(model, layer).attribute(x, target=[1, 2, 3]),
        lambda: LayerShallowCam(model, layer).attribute(x, target=-1),
        lambda: LayerShallowCam(model, model.fc).attribute(x, target=0),
    ]


def _assert_unchanged(model: nn.Module, before: dict, hooks_before: dict) -> None:
    after = ref.model_fingerprint(model)
    assert after["dict_keys"] == before["dict_keys"]
    assert after["training"] == before["training"]
    assert after["requires_grad"] == before["requires_grad"]
    assert after["state"].keys() == before["state"].keys()
    for key, value in before["state"].items():
        assert torch.equal(after["state"][key], value), key
    assert ref.hook_counts(model) == hooks_before
    assert all(p.grad is None for p in model.parameters())
    # the engine's torch function mode is not left active
    assert torch._C._len_torch_function_stack() == 0


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_model_unchanged_after_calls(bn_model, mode):
    bn_model.train(mode == "train")
    before, hooks = ref.model_fingerprint(bn_model), ref.hook_counts(bn_model)
    assert all(counts == (0, 0, 0, 0) for counts in hooks.values())
    for call in _calls(bn_model):
        maps = call()
        maps = maps if isinstance(maps, list) else [maps]
        assert all(bool(torch.isfinite(m).all()) for m in maps)
        _assert_unchanged(bn_model, before, hooks)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_model_unchanged_after_error(bn_model, mode):
    bn_model.train(mode == "train")
    before, hooks = ref.model_fingerprint(bn_model), ref.hook_counts(bn_model)
    for call in _failing_calls(bn_model):
        with pytest.raises(ValueError):
            call()
        _assert_unchanged(bn_model, before, hooks)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_model_unchanged_after_error_inside_the_forward_pass(bn_model, mode):
    # 4 input channels for a 3-channel conv: the model itself raises mid-forward
    bn_model.train(mode == "train")
    before, hooks = ref.model_fingerprint(bn_model), ref.hook_counts(bn_model)
    for method in METHODS:
        with pytest.raises(RuntimeError):
            method(bn_model, bn_model.features[3]).attribute(
                torch.randn(2, 4, 8, 8), target=0
            )
        _assert_unchanged(bn_model, before, hooks)
    # and the model still works, with and without the methods
    x = torch.randn(2, 3, 8, 8)
    assert LayerShallowCam(bn_model, bn_model.features[3]).attribute(
        x, target=0
    ).shape == (
        2,
        1,
        4,
        4,
    )
    _assert_unchanged(bn_model, before, hooks)


def test_running_stats_restored_in_train_mode(bn_model):
    bn_model.train()
    bn = bn_model.features[1]
    mean, var = bn.running_mean.clone(), bn.running_var.clone()
    tracked = bn.num_batches_tracked.clone()
    x = torch.randn(2, 3, 8, 8)
    for method in METHODS:
        method(bn_model, bn_model.features[3]).attribute(x, target=0)
        assert torch.equal(bn.running_mean, mean)
        assert torch.equal(bn.running_var, var)
        assert torch.equal(bn.num_batches_tracked, tracked)
    assert bn_model.training and bn.training


def test_user_hooks_survive_and_still_run(bn_model):
    seen = []
    handle = bn_model.features[3].register_forward_hook(lambda *_: seen.append(1))
    try:
        hooks = ref.hook_counts(bn_model)
        for method in METHODS:
            method(bn_model, bn_model.features[3]).attribute(torch.randn(1, 3, 8, 8))
        assert ref.hook_counts(bn_model) == hooks
        assert len(seen) == 3  # the user's hook ran once per call
    finally:
        handle.remove()


def test_unknown_leaf_error_leaves_model_unchanged():
    model = _swish_model()
    before, hooks = ref.model_fingerprint(model), ref.hook_counts(model)
    with pytest.raises(TypeError):
        LayerShallowCam(model, model[0]).attribute(torch.randn(1, 3, 8, 8), target=0)
    _assert_unchanged(model, before, hooks)


@pytest.mark.parametrize("method", METHODS)
def test_outer_no_grad_and_frozen_parameters_give_the_same_maps(small_vgg, method):
    x = torch.randn(2, 3, 8, 8)
    layer = small_vgg.features[2]
    expected = method(small_vgg, layer).attribute(x, target=[0, 1])
    with torch.no_grad():
        under_no_grad = method(small_vgg, layer).attribute(x, target=[0, 1])
    ref.assert_close(under_no_grad, expected)
    for p in small_vgg.parameters():
        p.requires_grad_(False)
    try:
        frozen = method(small_vgg, layer).attribute(x, target=[0, 1])
        with torch.no_grad():
            frozen_no_grad = method(small_vgg, layer).attribute(x, target=[0, 1])
    finally:
        for p in small_vgg.parameters():
            p.requires_grad_(True)
    ref.assert_close(frozen, expected)
    ref.assert_close(frozen_no_grad, expected)
    assert all(p.grad is None for p in small_vgg.parameters())


@pytest.mark.parametrize("method", METHODS)
def test_no_parameter_grad_and_input_untouched(resnet18, method):
    x = torch.randn(1, 3, 64, 64)
    x_copy = x.clone()
    method(resnet18, resnet18.layer2).attribute(x, target=1)
    assert all(p.grad is None for p in resnet18.parameters())
    assert torch.equal(x, x_copy)
    assert not x.requires_grad and x.grad is None


# ------------------------------------------------------------- clear errors
class Swish(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return x * torch.sigmoid(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(x)
        return grad * (s + x * s * (1 - s))


class CustomSwish(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return Swish.apply(x)


def _swish_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        CustomSwish(),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    ).eval()


@pytest.mark.parametrize("method", [LayerRelevanceCam, LayerShallowCam])
def test_custom_leaf_without_rule_raises_naming_module_and_identity_rule(method):
    model = _swish_model()
    with pytest.raises(TypeError) as info:
        method(model, model[2]).attribute(torch.randn(1, 3, 8, 8), target=0)
    message = str(info.value)
    assert "CustomSwish" in message and "'1'" in message
    assert "IdentityRule" in message


def test_custom_leaf_with_identity_rule_works_like_a_known_activation():
    # With rules={CustomSwish: IdentityRule()} the custom module passes relevance
    # unchanged, as the engine does for nn.SiLU: the same weights with nn.SiLU in
    # its place give the same maps.
    model = _swish_model()
    known = _swish_model()
    known[1] = nn.SiLU()
    x = torch.randn(2, 3, 8, 8)
    layer, known_layer = model[0], known[0]
    rules = {CustomSwish: IdentityRule()}
    maps, delta = LayerRelevanceCam(model, layer, rules=rules).attribute(
        x, target=[0, 2], initial_relevance="target", return_convergence_delta=True
    )
    expected = LayerRelevanceCam(known, known_layer).attribute(
        x, target=[0, 2], initial_relevance="target"
    )
    ref.assert_close(maps, expected)
    ref.assert_close(delta, torch.zeros(2), atol=ref.DELTA_ATOL)
    assert float(maps.max()) > 0
    for method in (LayerCam, LayerShallowCam):
        kwargs = {} if method is LayerCam else {"rules": rules}
        ref.assert_close(
            method(model, layer, **kwargs).attribute(x, target=1),
            method(known, known_layer).attribute(x, target=1),
        )
    # the rule can also be keyed by the module instance or by its name
    for key in (model[1], "1"):
        by_key = LayerRelevanceCam(model, layer, rules={key: IdentityRule()}).attribute(
            x, target=[0, 2], initial_relevance="target"
        )
        ref.assert_close(by_key, expected)


@pytest.mark.parametrize("method", METHODS)
def test_layer_not_in_model_raises_at_construction(small_vgg, method):
    with pytest.raises(ValueError, match="not a submodule"):
        method(small_vgg, nn.Conv2d(3, 4, 3))


@pytest.mark.parametrize("method", METHODS)
def test_layer_output_not_a_feature_map_raises(small_vgg, method):
    with pytest.raises(ValueError, match="4-D"):
        method(small_vgg, small_vgg.fc).attribute(torch.randn(1, 3, 8, 8), target=0)


@pytest.mark.parametrize("method", METHODS)
def test_target_out_of_range_raises(small_vgg, method):
    x = torch.randn(2, 3, 8, 8)
    cam = method(small_vgg, small_vgg.features[2])
    with pytest.raises(ValueError, match="out of range"):
        cam.attribute(x, target=5)
    with pytest.raises(ValueError, match="out of range"):
        cam.attribute(x, target=[0, -1])
    with pytest.raises(ValueError, match="out of range"):
        cam.attribute(x, target=torch.tensor([7, 0]))


@pytest.mark.parametrize("method", METHODS)
def test_target_list_of_wrong_length_raises(small_vgg, method):
    cam = method(small_vgg, small_vgg.features[2])
    with pytest.raises(ValueError, match="3 entries"):
        cam.attribute(torch.randn(2, 3, 8, 8), target=[0, 1, 2])
    with pytest.raises(ValueError, match="one target per example"):
        cam.attribute(torch.randn(3, 3, 8, 8), target=torch.tensor([0, 1]))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_input_raises(small_vgg, method, bad):
    x = torch.randn(1, 3, 8, 8)
    x[0, 1, 2, 3] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        method(small_vgg, small_vgg.features[2]).attribute(x, target=0)


@pytest.mark.parametrize("method", [LayerRelevanceCam, LayerShallowCam])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_raises_for_relevance_methods(method, dtype):
    model = models.SmallVgg().to(dtype).eval()
    with pytest.raises(TypeError, match="half precision"):
        method(model, model.features[2]).attribute(
            torch.randn(1, 3, 8, 8, dtype=dtype), target=0
        )


def test_double_precision_works(small_vgg):
    import copy

    model = copy.deepcopy(small_vgg).double()
    x = torch.randn(1, 3, 8, 8)
    for method in METHODS:
        maps = method(model, model.features[2]).attribute(x.double(), target=1)
        expected = method(small_vgg, small_vgg.features[2]).attribute(x, target=1)
        assert maps.dtype == torch.float64
        ref.assert_close(maps.float(), expected, rtol=1e-4)


class TwiceRelu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.conv2(self.relu(self.conv1(x))))
        return self.fc(self.pool(x).flatten(1))


@pytest.mark.parametrize("method", METHODS)
def test_module_called_twice_as_layer_raises(method):
    model = TwiceRelu().eval()
    with pytest.raises(ValueError, match="called 2 times"):
        method(model, model.relu).attribute(torch.randn(1, 3, 8, 8), target=0)


def test_module_not_called_raises(small_vgg):
    class WithUnused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = small_vgg
            self.unused = nn.Conv2d(3, 3, 1)

        def forward(self, x: Tensor) -> Tensor:
            return self.net(x)

    model = WithUnused()
    for method in METHODS:
        with pytest.raises(ValueError, match="not called"):
            method(model, model.unused).attribute(torch.randn(1, 3, 8, 8), target=0)


def test_invalid_option_strings_raise(small_vgg):
    x = torch.randn(1, 3, 8, 8)
    layer = small_vgg.features[2]
    shallow = LayerShallowCam(small_vgg, layer)
    relevance = LayerRelevanceCam(small_vgg, layer)
    with pytest.raises(ValueError, match="variant"):
        shallow.attribute(x, target=0, variant="v4")
    for cam in (shallow, relevance):
        with pytest.raises(ValueError, match="initial_relevance"):
            cam.attribute(x, target=0, initial_relevance="onehot")
        with pytest.raises(ValueError, match="channel_weights"):
            cam.attribute(x, target=0, channel_weights="absolute")
    with pytest.raises(ValueError, match="scaling"):
        LayerCam(small_vgg, layer).attribute(x, target=0, scaling="sigmoid")


def test_invalid_layer_argument_raises(small_vgg):
    with pytest.raises(TypeError, match="layer must be"):
        LayerCam(small_vgg, [])
    with pytest.raises(ValueError, match="same module twice"):
        LayerCam(small_vgg, [small_vgg.features[2], small_vgg.features[2]])


def test_relevance_methods_need_the_module(small_vgg):
    with pytest.raises(TypeError, match="torch.nn.Module"):
        LayerRelevanceCam(lambda x: small_vgg(x), small_vgg.features[2])
    # LayerCam works with any forward function
    x = torch.randn(1, 3, 8, 8)
    ref.assert_close(
        LayerCam(lambda t: small_vgg(t), small_vgg.features[2]).attribute(x, target=1),
        LayerCam(small_vgg, small_vgg.features[2]).attribute(x, target=1),
    )


@pytest.mark.parametrize("method", METHODS)
def test_tuple_of_one_input_equals_the_tensor(small_vgg, method):
    x = torch.randn(2, 3, 8, 8)
    cam = method(small_vgg, small_vgg.features[2])
    ref.assert_close(
        cam.attribute((x,), target=[1, 4]), cam.attribute(x, target=[1, 4])
    )


class TwoInputs(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return self.net(a + b)


@pytest.mark.parametrize("method", METHODS)
def test_model_with_two_inputs_takes_a_tuple(small_vgg, method):
    model = TwoInputs(small_vgg)
    a, b = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    maps = method(model, small_vgg.features[2]).attribute((a, b), target=[0, 3])
    expected = method(small_vgg, small_vgg.features[2]).attribute(a + b, target=[0, 3])
    ref.assert_close(maps, expected)


@pytest.mark.parametrize("method", METHODS)
def test_input_that_requires_grad_is_left_alone(small_vgg, method):
    x = torch.randn(2, 3, 8, 8)
    expected = method(small_vgg, small_vgg.features[2]).attribute(x, target=1)
    x_grad = x.clone().requires_grad_(True)
    maps = method(small_vgg, small_vgg.features[2]).attribute(x_grad, target=1)
    ref.assert_close(maps, expected)
    assert x_grad.grad is None and not maps.requires_grad


@pytest.mark.parametrize("method", METHODS)
def test_model_output_not_class_scores_raises(small_vgg, method):
    class FirstLogit(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = small_vgg

        def forward(self, x: Tensor) -> Tensor:
            return self.net(x)[:, 0]

    model = FirstLogit()
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        method(model, small_vgg.features[2]).attribute(
            torch.randn(2, 3, 8, 8), target=0
        )


def test_convergence_delta_per_layer_for_a_list(small_vgg):
    x = torch.randn(2, 3, 8, 8)
    layers = [small_vgg.features[1], small_vgg.features[4]]
    for method in (LayerRelevanceCam, LayerShallowCam):
        maps, deltas = method(small_vgg, layers).attribute(
            x, target=[0, 1], return_convergence_delta=True
        )
        assert len(maps) == 2 and len(deltas) == 2
        for delta in deltas:
            ref.assert_close(delta, torch.zeros(2), atol=ref.DELTA_ATOL)
        _, deltas = method(small_vgg, layers).attribute(
            x, target=[0, 1], initial_relevance="clrp", return_convergence_delta=True
        )
        assert len(deltas) == 2
        for delta in deltas:
            ref.assert_close(delta, torch.zeros(2), atol=ref.DELTA_ATOL)
    # a single layer gives a single tensor of N deltas
    _, delta = LayerShallowCam(small_vgg, layers[0]).attribute(
        x, target=0, initial_relevance="target", return_convergence_delta=True
    )
    assert isinstance(delta, Tensor) and delta.shape == (2,)


# ------------------------------------------------------- sigmoid gates
class HandWrittenSwish(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(x)


class HandWrittenGLU(nn.Module):
    """A GLU with the gate first: sigmoid(b) * a."""

    def forward(self, x: Tensor) -> Tensor:
        a, b = x.chunk(2, dim=1)
        return torch.sigmoid(b) * a


@pytest.mark.parametrize("method", [LayerRelevanceCam, LayerShallowCam])
def test_hand_written_swish_is_a_gate_like_nn_silu(method):
    """``x * torch.sigmoid(x)`` written in a forward gives all relevance to x, as
    the engine does for nn.SiLU: the same weights with nn.SiLU in its place give
    the same maps, and relevance is conserved (no warning)."""
    model = _swish_model()
    model[1] = HandWrittenSwish()
    known = _swish_model()
    known[1] = nn.SiLU()
    x = torch.randn(2, 3, 8, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        maps, delta = method(model, model[0]).attribute(
            x, target=[0, 2], initial_relevance="target", return_convergence_delta=True
        )
    expected = method(known, known[0]).attribute(
        x, target=[0, 2], initial_relevance="target"
    )
    ref.assert_close(maps, expected)
    ref.assert_close(delta, torch.zeros(2), atol=ref.DELTA_ATOL)
    assert float(maps.max()) > 0


class DetachedGateGLU(nn.Module):
    """The GLU with its gate cut out of the graph: a constant scaling of a."""

    def forward(self, x: Tensor) -> Tensor:
        a, b = x.chunk(2, dim=1)
        return torch.sigmoid(b.detach()) * a


@pytest.mark.parametrize("method", [LayerRelevanceCam, LayerShallowCam])
def test_glu_gives_all_relevance_to_the_signal_half(method):
    """``sigmoid(b) * a``: the gate half b gets no relevance and the signal half a
    all of it, so the maps equal those of the same GLU with its gate detached
    (a constant scaling of a), and relevance is conserved."""
    torch.manual_seed(1)

    def glu_model(glu: nn.Module) -> nn.Module:
        torch.manual_seed(1)
        return nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), glu, nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3),
        ).eval()  # fmt: skip

    model, detached = glu_model(HandWrittenGLU()), glu_model(DetachedGateGLU())
    x = torch.randn(2, 3, 6, 6)
    maps, delta = method(model, model[0]).attribute(
        x, target=[1, 2], initial_relevance="target", return_convergence_delta=True
    )
    expected = method(detached, detached[0]).attribute(
        x, target=[1, 2], initial_relevance="target"
    )
    ref.assert_close(maps, expected)
    ref.assert_close(delta, torch.zeros(2), atol=ref.DELTA_ATOL)
    assert float(maps.max()) > 0


class SquaringNet(nn.Module):
    """A product of two graph tensors written in the model's own forward."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(x)
        h = torch.relu(self.conv2(h * h))
        return self.fc(h.mean((2, 3)))


def test_other_products_of_graph_tensors_are_left_to_the_conservation_check():
    """``h * h`` has no sigmoid side: it is not taken for a gate, relevance goes
    through its gradient, and the check warns that an operation the engine does
    not see broke conservation."""
    model = SquaringNet().eval()
    with pytest.warns(RuntimeWarning, match="not conserved.*No single rule-carrying"):
        LayerShallowCam(model, model.conv1).attribute(
            torch.randn(2, 3, 8, 8), target=[0, 2], initial_relevance="target"
        )
