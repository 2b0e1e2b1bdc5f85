"""The relevance behind LayerRelevanceCam and LayerShallowCam, against explicit LRP.

Each expected relevance is propagated in the test with plain tensor operations
(``tests/_reference.py``): z+ through convs and linears via transposed
convolutions, winner-take-all through max-pools, proportional through average
pools; the package's maps must be the maps of that relevance.
"""

from __future__ import annotations

import threading
import warnings

import _reference as ref
import models
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from captum_shallowcam import LayerCam, LayerRelevanceCam, LayerShallowCam, ZPlusRule
from captum_shallowcam.rules import (
    Alpha1_Beta0_Rule,
    EpsilonRule,
    GammaRule,
    IdentityRule,
)

LAYERS = ["features.1", "features.2", "features.4"]


@pytest.fixture(scope="module")
def x_small() -> Tensor:
    torch.manual_seed(12)
    return torch.randn(2, 3, 8, 8)


def _layer(model: nn.Module, name: str) -> nn.Module:
    return dict(model.named_modules())[name]


# ------------------------------------------------ explicit z+ on a VGG-style net
@pytest.mark.parametrize("layer_name", LAYERS)
@pytest.mark.parametrize("kind", ["target", "contrastive"])
def test_relevance_cam_equals_explicit_zplus_propagation(
    small_vgg_seed_11, x_small, layer_name, kind
):
    target = torch.tensor([1, 3])
    r_logits = ref.initial_relevance(kind, target, 5)
    a, r = ref.small_vgg_relevance(small_vgg_seed_11, x_small, r_logits)[layer_name]
    # the reference itself conserves relevance
    ref.assert_close(r.flatten(1).sum(1), r_logits.sum(1), rtol=1e-5)
    layer = _layer(small_vgg_seed_11, layer_name)
    maps, delta = LayerRelevanceCam(small_vgg_seed_11, layer).attribute(
        x_small,
        target=target,
        initial_relevance=kind,
        relu_attributions=False,
        return_convergence_delta=True,
    )
    ref.assert_close(maps, ref.relevance_cam_map(a, r, relu=False), rtol=ref.REL_RTOL)
    ref.assert_close(delta, r_logits.sum(1) - r.flatten(1).sum(1), atol=ref.DELTA_ATOL)
    relu_maps = LayerRelevanceCam(small_vgg_seed_11, layer).attribute(
        x_small, target=target, initial_relevance=kind
    )
    ref.assert_close(relu_maps, ref.relevance_cam_map(a, r), rtol=ref.REL_RTOL)
    positive = LayerRelevanceCam(small_vgg_seed_11, layer).attribute(
        x_small, target=target, initial_relevance=kind, channel_weights="positive"
    )
    alpha = r.sum(dim=(2, 3), keepdim=True).clamp(min=0)
    ref.assert_close(
        positive, torch.relu((alpha * a).sum(1, keepdim=True)), rtol=ref.REL_RTOL
    )


@pytest.mark.parametrize("layer_name", LAYERS)
def test_relevance_cam_clrp_equals_explicit(small_vgg_seed_11, x_small, layer_name):
    target = torch.tensor([0, 4])
    e = ref.one_hot(target, 5)
    a, r_t = ref.small_vgg_relevance(small_vgg_seed_11, x_small, e)[layer_name]
    _, r_d = ref.small_vgg_relevance(small_vgg_seed_11, x_small, (1 - e) / 4)[
        layer_name
    ]
    r = torch.relu(r_t - r_d)
    maps = LayerRelevanceCam(
        small_vgg_seed_11, _layer(small_vgg_seed_11, layer_name)
    ).attribute(
        x_small, target=target, initial_relevance="clrp", relu_attributions=False
    )
    ref.assert_close(maps, ref.relevance_cam_map(a, r, relu=False), rtol=ref.REL_RTOL)


@pytest.mark.parametrize("layer_name", LAYERS)
def test_shallow_cam_equals_explicit_relevance_and_gradient(
    small_vgg_seed_11, x_small, layer_name
):
    target = torch.tensor([2, 2])
    r_logits = ref.initial_relevance("contrastive", target, 5)
    a, r = ref.small_vgg_relevance(small_vgg_seed_11, x_small, r_logits)[layer_name]
    g = ref.small_vgg_gradient(small_vgg_seed_11, x_small, target, layer_name)
    cam = LayerShallowCam(small_vgg_seed_11, _layer(small_vgg_seed_11, layer_name))
    contrastive = {"initial_relevance": "contrastive"}
    signed = {"relu_attributions": False, "channel_weights": "signed", **contrastive}
    ref.assert_close(
        cam.attribute(x_small, target=2, mask="plain", **signed),
        ref.shallow_cam_v1_map(a, g, r, relu=False),
        rtol=ref.REL_RTOL,
    )
    # the default mask (split-gated) on this ReLU output: alpha_k over the
    # positions with G_k > 0 only
    gated = ref.shallow_cam_v1_map(a, g, r, relu=False, gated=True)
    ref.assert_close(
        cam.attribute(x_small, target=2, **signed), gated, rtol=ref.REL_RTOL
    )
    # it differs from the plain form where a channel's gradient has both signs
    # (not at the last layer, whose gradient is constant per channel)
    mixed = bool(((g > 0).flatten(2).any(2) & (g < 0).flatten(2).any(2)).any())
    plain = ref.shallow_cam_v1_map(a, g, r, relu=False)
    assert torch.allclose(gated, plain) != mixed
    ref.assert_close(
        cam.attribute(
            x_small, target=2, variant="v3", channel_weights="signed", **contrastive
        ),
        ref.shallow_cam_v3_map(a, g, r),
        rtol=ref.REL_RTOL,
    )
    positive = r.sum(dim=(2, 3), keepdim=True).clamp(min=0)
    expected_positive = torch.relu((positive * torch.relu(g) * a).sum(1, keepdim=True))
    ref.assert_close(
        cam.attribute(
            x_small, target=2, mask="plain", channel_weights="positive", **contrastive
        ),
        expected_positive,
        rtol=ref.REL_RTOL,
    )
    # The defaults (chosen by the benchmark): v1, CLRP relevance, mass weights,
    # the split-gated mask.
    ref.assert_close(
        cam.attribute(x_small, target=2),
        cam.attribute(
            x_small,
            target=2,
            variant="v1",
            initial_relevance="clrp",
            channel_weights="mass",
            mask="split-gated",
        ),
        rtol=0,
        atol=0,
    )
    ref.assert_close(
        LayerCam(small_vgg_seed_11, _layer(small_vgg_seed_11, layer_name)).attribute(
            x_small, target=2
        ),
        ref.layer_cam_map(a, g),
        rtol=1e-5,
    )


# ------------------------------------------------------ BatchNorm is folded
def _bn_model(seed: int) -> models.SmallVggBN:
    torch.manual_seed(seed)
    model = models.SmallVggBN(num_classes=5)
    with torch.no_grad():
        for conv, bn in (
            (model.features[0], model.features[1]),
            (model.features[4], model.features[5]),
        ):
            n = bn.num_features
            # some negative scales, none zero (a zero scale makes a dead channel)
            bn.weight.copy_(torch.tensor([-0.8, 0.6, -0.3, 1.2, 0.9, 1.4])[:n])
            bn.running_var.uniform_(0.5, 2.0)
            # folded bias (b - mean) * scale + beta <= 0, so that every output with
            # relevance has a positive contribution (the explicit z+ needs it)
            bn.running_mean.copy_(conv.bias + 0.1 * torch.sign(bn.weight))
            bn.bias.fill_(-0.05)
    return model


@pytest.mark.parametrize("kind", ["target", "contrastive"])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_batchnorm_folded_into_conv_equals_explicit_zplus_on_folded_weights(kind, mode):
    model = _bn_model(5).train(mode == "train")
    f = model.features
    torch.manual_seed(6)
    x = torch.randn(2, 3, 8, 8)
    target = torch.tensor([4, 1])
    training = mode == "train"

    def bn(z: Tensor, module: nn.BatchNorm2d) -> tuple[Tensor, Tensor, Tensor]:
        if training:
            mean, var = z.mean((0, 2, 3)), z.var((0, 2, 3), unbiased=False)
        else:
            mean, var = module.running_mean, module.running_var
        scale = module.weight / torch.sqrt(var + module.eps)
        out = (z - mean[None, :, None, None]) * scale[None, :, None, None]
        return out + module.bias[None, :, None, None], scale, mean

    with torch.no_grad():
        a1 = torch.relu(bn(F.conv2d(x, f[0].weight, f[0].bias, padding=1), f[1])[0])
        p1 = F.max_pool2d(a1, 2)  # output of features[3], the explained layer
        z2, scale2, _ = bn(F.conv2d(p1, f[4].weight, f[4].bias, padding=1), f[5])
        a2 = torch.relu(z2)
        pooled = a2.mean((2, 3))
        r_logits = ref.initial_relevance(kind, target, 5)
        r_a2 = ref.global_avg_pool_prop(
            a2, ref.zplus_linear(pooled, model.fc.weight, r_logits)
        )
        folded = f[4].weight * scale2[:, None, None, None]
        assert bool((folded < 0).any() and (scale2 < 0).any())
        r_p1 = ref.zplus_conv2d(p1, folded, r_a2, padding=1)
    # z+ on the folded weights differs from z+ on the conv's own weights
    unfolded = ref.zplus_conv2d(p1, f[4].weight.detach(), r_a2, padding=1)
    assert not torch.allclose(unfolded.sum((2, 3)), r_p1.sum((2, 3)), atol=1e-3)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    maps, delta = LayerRelevanceCam(model, f[3]).attribute(
        x,
        target=target,
        initial_relevance=kind,
        relu_attributions=False,
        return_convergence_delta=True,
    )
    ref.assert_close(
        maps, ref.relevance_cam_map(p1, r_p1, relu=False), rtol=ref.REL_RTOL
    )
    ref.assert_close(delta, torch.zeros(2), atol=ref.DELTA_ATOL)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


# --------------------------------------------------------------------- rules
class RuleNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 5, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(5, 3)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


@pytest.fixture
def rule_net() -> RuleNet:
    torch.manual_seed(21)
    model = RuleNet().eval()
    with torch.no_grad():
        model.conv2.bias.uniform_(-0.3, 0.0)
    assert bool((model.conv2.weight < 0).any())
    return model


def _rule_net_reference(model: RuleNet, x: Tensor, target: Tensor, conv2_rule: str):
    """Relevance at relu1 with z+ everywhere except ``conv2_rule`` on conv2."""
    with torch.no_grad():
        a1 = torch.relu(model.conv1(x))
        z2 = model.conv2(a1)
        a2 = torch.relu(z2)
        pooled = a2.mean((2, 3))
        r_logits = ref.initial_relevance("target", target, 3)
        r_a2 = ref.global_avg_pool_prop(
            a2, ref.zplus_linear(pooled, model.fc.weight, r_logits)
        )
        w, b = model.conv2.weight, model.conv2.bias
        if conv2_rule == "zplus":
            r_a1 = ref.zplus_conv2d(a1, w, r_a2, padding=1)
        elif conv2_rule == "epsilon":
            r_a1 = ref.epsilon_conv2d(a1, w, b, r_a2, epsilon=1e-9, padding=1)
        elif conv2_rule == "epsilon-0.5":
            r_a1 = ref.epsilon_conv2d(a1, w, b, r_a2, epsilon=0.5, padding=1)
        elif conv2_rule == "gamma":
            r_a1 = ref.epsilon_conv2d(
                a1, w + 0.5 * w.clamp(min=0), None, r_a2, padding=1
            )
        else:
            raise ValueError(conv2_rule)
    return a1, r_a1


def _rcam(model, rules=None, x=None, target=None):
    # the epsilon rule with a bias does not conserve relevance: no warning here
    return LayerRelevanceCam(model, model.relu1, rules=rules).attribute(
        x,
        target=target,
        initial_relevance="target",
        relu_attributions=False,
        check_conservation=False,
    )


@pytest.fixture
def x_rule() -> Tensor:
    torch.manual_seed(22)
    return torch.randn(2, 3, 6, 6)


def test_default_rule_is_zplus(rule_net, x_rule):
    target = torch.tensor([0, 2])
    a, r = _rule_net_reference(rule_net, x_rule, target, "zplus")
    assert bool((r >= 0).all())  # z+ with positive relevance stays positive
    ref.assert_close(
        _rcam(rule_net, x=x_rule, target=target),
        ref.relevance_cam_map(a, r, relu=False),
        rtol=ref.REL_RTOL,
    )
    # Captum's Alpha1_Beta0_Rule(set_bias_to_zero=True) is the same for x >= 0
    same = _rcam(
        rule_net,
        rules={nn.Conv2d: Alpha1_Beta0_Rule(set_bias_to_zero=True)},
        x=x_rule,
        target=target,
    )
    ref.assert_close(same, ref.relevance_cam_map(a, r, relu=False), rtol=ref.REL_RTOL)


@pytest.mark.parametrize("how", ["type", "module", "name"])
def test_epsilon_rule_by_type_module_and_name_gives_explicit_epsilon_relevance(
    rule_net, x_rule, how
):
    target = torch.tensor([1, 1])
    a, r_eps = _rule_net_reference(rule_net, x_rule, target, "epsilon")
    _, r_zplus = _rule_net_reference(rule_net, x_rule, target, "zplus")
    # the epsilon rule on a conv with negative weights gives negative relevance
    # to some channels, unlike z+: the maps must differ
    assert bool((r_eps < 0).any())
    expected = ref.relevance_cam_map(a, r_eps, relu=False)
    assert not torch.allclose(
        expected, ref.relevance_cam_map(a, r_zplus, relu=False), atol=1e-3
    )
    key = {"type": nn.Conv2d, "module": rule_net.conv2, "name": "conv2"}[how]
    actual = _rcam(rule_net, rules={key: EpsilonRule()}, x=x_rule, target=target)
    ref.assert_close(actual, expected, rtol=ref.REL_RTOL)


def test_epsilon_rule_with_large_epsilon_absorbs_relevance(rule_net, x_rule):
    target = torch.tensor([2, 0])
    a, r = _rule_net_reference(rule_net, x_rule, target, "epsilon-0.5")
    maps, delta = LayerRelevanceCam(
        rule_net, rule_net.relu1, rules={"conv2": EpsilonRule(epsilon=0.5)}
    ).attribute(
        x_rule,
        target=target,
        initial_relevance="target",
        relu_attributions=False,
        return_convergence_delta=True,
        check_conservation=False,
    )
    ref.assert_close(maps, ref.relevance_cam_map(a, r, relu=False), rtol=ref.REL_RTOL)
    ref.assert_close(delta, 1 - r.flatten(1).sum(1), atol=ref.DELTA_ATOL)
    assert bool((delta.abs() > 1e-3).all())  # epsilon absorbs some relevance


def test_gamma_rule_gives_explicit_gamma_relevance(rule_net, x_rule):
    target = torch.tensor([0, 1])
    a, r = _rule_net_reference(rule_net, x_rule, target, "gamma")
    actual = _rcam(
        rule_net,
        rules={rule_net.conv2: GammaRule(gamma=0.5, set_bias_to_zero=True)},
        x=x_rule,
        target=target,
    )
    ref.assert_close(actual, ref.relevance_cam_map(a, r, relu=False), rtol=ref.REL_RTOL)


def test_rule_below_the_layer_changes_nothing(rule_net, x_rule):
    target = torch.tensor([0, 2])
    a, r = _rule_net_reference(rule_net, x_rule, target, "zplus")
    actual = _rcam(
        rule_net, rules={rule_net.conv1: EpsilonRule()}, x=x_rule, target=target
    )
    ref.assert_close(actual, ref.relevance_cam_map(a, r, relu=False), rtol=ref.REL_RTOL)


def test_captum_rule_attribute_is_used_and_kept(rule_net, x_rule):
    target = torch.tensor([1, 0])
    a, r_eps = _rule_net_reference(rule_net, x_rule, target, "epsilon")
    rule = EpsilonRule()
    rule_net.conv2.rule = rule
    keys = sorted(rule_net.conv2.__dict__)
    for method in (LayerRelevanceCam, LayerShallowCam):
        method(rule_net, rule_net.relu1).attribute(
            x_rule, target=target, check_conservation=False
        )
    actual = _rcam(rule_net, x=x_rule, target=target)
    ref.assert_close(
        actual, ref.relevance_cam_map(a, r_eps, relu=False), rtol=ref.REL_RTOL
    )
    # Captum's LRP deletes user rules after a call (issue #1059); this must not
    assert rule_net.conv2.rule is rule
    assert sorted(rule_net.conv2.__dict__) == keys
    assert not hasattr(rule_net.conv1, "rule")
    assert not any(hasattr(m, "activations") for m in rule_net.modules())


def test_rule_precedence_module_then_name_then_attribute_then_type(rule_net, x_rule):
    target = torch.tensor([1, 2])
    a, r_eps = _rule_net_reference(rule_net, x_rule, target, "epsilon")
    _, r_zplus = _rule_net_reference(rule_net, x_rule, target, "zplus")
    eps_map = ref.relevance_cam_map(a, r_eps, relu=False)
    zplus_map = ref.relevance_cam_map(a, r_zplus, relu=False)
    rule_net.conv2.rule = EpsilonRule()
    # module.rule beats a rule by type
    ref.assert_close(
        _rcam(rule_net, {nn.Conv2d: ZPlusRule()}, x_rule, target),
        eps_map,
        rtol=ref.REL_RTOL,
    )
    # a rule by module or by name beats module.rule
    ref.assert_close(
        _rcam(rule_net, {rule_net.conv2: ZPlusRule()}, x_rule, target),
        zplus_map,
        rtol=ref.REL_RTOL,
    )
    ref.assert_close(
        _rcam(rule_net, {"conv2": ZPlusRule()}, x_rule, target),
        zplus_map,
        rtol=ref.REL_RTOL,
    )


def test_epsilon_rule_on_linear_by_type(rule_net, x_rule):
    target = torch.tensor([2, 1])
    with torch.no_grad():
        a1 = torch.relu(rule_net.conv1(x_rule))
        a2 = torch.relu(rule_net.conv2(a1))
        pooled = a2.mean((2, 3))
        w, b = rule_net.fc.weight, rule_net.fc.bias
        z = pooled @ w.T + b
        z = z + 1e-9 * torch.where(z >= 0, 1.0, -1.0)
        r_logits = ref.one_hot(target, 3)
        r_pooled = pooled * ((r_logits / z) @ w)
        r_a2 = ref.global_avg_pool_prop(a2, r_pooled)
    maps = LayerRelevanceCam(
        rule_net, rule_net.relu2, rules={nn.Linear: EpsilonRule()}
    ).attribute(
        x_rule,
        target=target,
        initial_relevance="target",
        relu_attributions=False,
        check_conservation=False,
    )
    ref.assert_close(
        maps, ref.relevance_cam_map(a2, r_a2, relu=False), rtol=ref.REL_RTOL
    )


def test_conservation_warning_names_the_operation(rule_net, x_rule):
    cam = LayerRelevanceCam(rule_net, rule_net.relu1, rules={"conv2": EpsilonRule()})
    with pytest.warns(RuntimeWarning, match="not conserved at layer 'relu1'.*'conv2'"):
        cam.attribute(x_rule, target=0)
    # silenced on request
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cam.attribute(x_rule, target=0, check_conservation=False)
    # and the z+ default conserves, so it does not warn
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LayerShallowCam(rule_net, rule_net.relu1).attribute(x_rule, target=0)


def test_invalid_rules_raise(rule_net):
    with pytest.raises(TypeError, match="PropagationRule"):
        LayerRelevanceCam(rule_net, rule_net.relu1, rules={nn.Conv2d: "epsilon"})
    with pytest.raises(TypeError, match="mapping"):
        LayerShallowCam(rule_net, rule_net.relu1, rules=[EpsilonRule()])
    with pytest.raises(TypeError, match="keys"):
        LayerShallowCam(rule_net, rule_net.relu1, rules={3: EpsilonRule()})


# ------------------------------------------------- residual add, gating, padding
class ResidualNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        h = self.relu1(self.conv1(x))
        out = self.conv2(h)
        out = out + h
        out = self.relu2(out)
        return self.fc(torch.flatten(self.pool(out), 1))


def test_residual_add_splits_relevance_by_absolute_contribution():
    torch.manual_seed(31)
    model = ResidualNet().eval()
    x = torch.randn(2, 3, 6, 6)
    target = torch.tensor([0, 2])
    with torch.no_grad():
        h = torch.relu(model.conv1(x))
        branch = model.conv2(h)
        s = torch.relu(branch + h)
        r_s = ref.global_avg_pool_prop(
            s, ref.zplus_linear(s.mean((2, 3)), model.fc.weight, ref.one_hot(target, 3))
        )
        total = branch.abs() + h.abs()
        share = torch.where(total > 0, branch.abs() / total, 0.5)
        r_branch = share * r_s
    maps = LayerRelevanceCam(model, model.conv2).attribute(
        x,
        target=target,
        initial_relevance="target",
        relu_attributions=False,
        check_conservation=False,
    )
    ref.assert_close(
        maps, ref.relevance_cam_map(branch, r_branch, relu=False), rtol=ref.REL_RTOL
    )
    # and below the add the two branches together conserve the relevance
    _, delta = LayerRelevanceCam(model, model.relu1).attribute(
        x, target=target, initial_relevance="target", return_convergence_delta=True
    )
    ref.assert_close(delta, torch.zeros(2), atol=ref.DELTA_ATOL)


class GatedNet(nn.Module):
    """Squeeze-excitation style gating: h * sigmoid(fc(mean(h)))."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.relu = nn.ReLU()
        self.gate = nn.Linear(4, 4)
        self.fc = nn.Linear(4, 3, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        h = self.relu(self.conv(x))
        g = torch.sigmoid(self.gate(h.mean((2, 3))))[:, :, None, None]
        y = h * g
        return self.fc(y.mean((2, 3)))


def test_gating_mul_gives_all_relevance_to_the_signal():
    torch.manual_seed(32)
    model = GatedNet().eval()
    x = torch.randn(2, 3, 6, 6)
    target = torch.tensor([1, 2])
    with torch.no_grad():
        h = torch.relu(model.conv(x))
        g = torch.sigmoid(model.gate(h.mean((2, 3))))[:, :, None, None]
        y = h * g
        r_y = ref.global_avg_pool_prop(
            y, ref.zplus_linear(y.mean((2, 3)), model.fc.weight, ref.one_hot(target, 3))
        )
    maps, delta = LayerRelevanceCam(model, model.relu).attribute(
        x,
        target=target,
        initial_relevance="target",
        relu_attributions=False,
        return_convergence_delta=True,
    )
    ref.assert_close(maps, ref.relevance_cam_map(h, r_y, relu=False), rtol=ref.REL_RTOL)
    ref.assert_close(delta, torch.zeros(2), atol=ref.DELTA_ATOL)


def test_zero_padding_module_is_folded_into_the_following_conv():
    torch.manual_seed(33)
    padded = models.SmallVgg()
    conv = padded.features[3]
    same = nn.Conv2d(4, 6, 3, padding=0, bias=False)
    with torch.no_grad():
        same.weight.copy_(conv.weight)
    padded_model = models.SmallVgg()
    padded_model.load_state_dict(padded.state_dict())
    padded_model.features[3] = nn.Sequential(nn.ZeroPad2d(1), same)
    padded.eval()
    padded_model.eval()
    x = torch.randn(2, 3, 8, 8)
    for layer_index in (1, 2):
        for method in (LayerRelevanceCam, LayerShallowCam):
            expected = method(padded, padded.features[layer_index]).attribute(
                x, target=3
            )
            actual = method(padded_model, padded_model.features[layer_index]).attribute(
                x, target=3
            )
            assert float(expected.max()) > 0
            ref.assert_close(actual, expected, rtol=1e-5)


def _net_with_zero_pad(amounts, stride: int):  # noqa: ANN001
    """conv1 -> ReLU -> ZeroPad2d(amounts) -> conv2 -> ReLU -> pool -> fc."""
    conv1, conv2 = (
        nn.Conv2d(3, 4, 3, padding=1),
        nn.Conv2d(4, 6, 3, stride=stride, bias=False),
    )
    fc = nn.Linear(6, 3, bias=False)
    model = nn.Sequential(
        conv1, nn.ReLU(), nn.ZeroPad2d(amounts), conv2, nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), fc,
    ).eval()  # fmt: skip
    return model, conv1, conv2, fc


@pytest.mark.parametrize("amounts", [(1, 1, 1, 1), (0, 1, 0, 1), (2, 1, 0, 1)])
def test_zero_padding_fold_equals_explicit_zplus_on_the_padded_input(amounts):
    """Symmetric pads become the conv's own padding, asymmetric ones are applied
    inside the rule; both must equal z+ on the explicitly padded input, cropped
    (the padded positions are zeros and get no relevance)."""
    torch.manual_seed(41)
    model, conv1, conv2, fc = _net_with_zero_pad(amounts, stride=2)
    x = torch.randn(2, 3, 9, 9)
    target = torch.tensor([2, 0])
    with torch.no_grad():
        a1 = torch.relu(conv1(x))
        padded = F.pad(a1, amounts)
        a2 = torch.relu(F.conv2d(padded, conv2.weight, stride=2))
        r_y = ref.initial_relevance("contrastive", target, 3)
        r_pooled = ref.zplus_linear(a2.mean((2, 3)), fc.weight, r_y)
        r_a2 = ref.global_avg_pool_prop(a2, r_pooled)
        r_padded = ref.zplus_conv2d(padded, conv2.weight, r_a2, stride=2)
        left, _, top, _ = amounts
        r_a1 = r_padded[:, :, top : top + 9, left : left + 9]
    maps = LayerRelevanceCam(model, model[1]).attribute(
        x, target=target, relu_attributions=False
    )
    assert float(maps.abs().max()) > 0
    ref.assert_close(
        maps, ref.relevance_cam_map(a1, r_a1, relu=False), rtol=ref.REL_RTOL
    )


def test_epsilon_rule_behind_an_asymmetric_zero_pad_equals_explicit_epsilon_cropped():
    """A rule other than z+ on a conv after an asymmetric ZeroPad2d: the gate pads
    the input, applies the rule and crops, as explicit epsilon on the padded
    input would."""
    torch.manual_seed(47)
    amounts = (0, 1, 1, 0)
    model, conv1, conv2, fc = _net_with_zero_pad(amounts, stride=1)
    x = torch.randn(2, 3, 8, 8)
    target = torch.tensor([1, 2])
    with torch.no_grad():
        a1 = torch.relu(conv1(x))
        padded = F.pad(a1, amounts)
        a2 = torch.relu(F.conv2d(padded, conv2.weight))
        r_y = ref.initial_relevance("contrastive", target, 3)
        r_pooled = ref.zplus_linear(a2.mean((2, 3)), fc.weight, r_y)
        r_a2 = ref.global_avg_pool_prop(a2, r_pooled)
        r_padded = ref.epsilon_conv2d(padded, conv2.weight, None, r_a2, epsilon=1e-9)
        r_a1 = r_padded[:, :, 1:9, 0:8]
    maps = LayerRelevanceCam(model, model[1], rules={conv2: EpsilonRule()}).attribute(
        x, target=target, relu_attributions=False
    )
    assert float(maps.abs().max()) > 0
    ref.assert_close(
        maps, ref.relevance_cam_map(a1, r_a1, relu=False), rtol=ref.REL_RTOL
    )


class ScaledNet(nn.Module):
    """conv - relu - (times a constant) - conv - relu - mean - linear."""

    def __init__(self, scale) -> None:
        super().__init__()
        self.scale = scale
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.relu2 = nn.ReLU()
        self.fc = nn.Linear(4, 3, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        h = self.relu1(self.conv1(x))
        h = self.scale(h)
        return self.fc(self.relu2(self.conv2(h)).mean((2, 3)))


@pytest.mark.parametrize(
    "scale",
    [lambda h: h * 0.5, lambda h: 0.5 * h, lambda h: h / 2],
    ids=["h*0.5", "0.5*h", "h/2"],
)
def test_scaling_by_a_constant_passes_relevance_unchanged(scale):
    # Scaling by 0.5 before conv2 is the same function as halving conv2's
    # weights; the z-rule through a constant scaling (R_in = x c R / (c x)) passes
    # relevance on unchanged, so both models have the same relevance and maps.
    torch.manual_seed(34)
    scaled = ScaledNet(scale).eval()
    plain = ScaledNet(lambda h: h).eval()
    plain.load_state_dict(scaled.state_dict())
    with torch.no_grad():
        plain.conv2.weight.mul_(0.5)
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        ref.assert_close(scaled(x), plain(x))
    expected, expected_delta = LayerRelevanceCam(plain, plain.relu1).attribute(
        x, target=[0, 1], initial_relevance="target", return_convergence_delta=True
    )
    ref.assert_close(expected_delta, torch.zeros(2), atol=ref.DELTA_ATOL)
    maps, delta = LayerRelevanceCam(scaled, scaled.relu1).attribute(
        x,
        target=[0, 1],
        initial_relevance="target",
        return_convergence_delta=True,
        check_conservation=False,
    )
    ref.assert_close(delta, torch.zeros(2), atol=ref.DELTA_ATOL)
    ref.assert_close(maps, expected, rtol=1e-5)


# -------------------------------------------------- threads and DataParallel
class _Blocking(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = models.SmallVgg()
        self.entered = threading.Event()
        self.release = threading.Event()
        self.block = False

    def forward(self, x: Tensor) -> Tensor:
        if self.block:
            self.entered.set()
            self.release.wait(timeout=30)
        return self.net(x)


def test_same_model_from_two_threads_at_once_raises():
    model = _Blocking().eval()
    x = torch.randn(1, 3, 8, 8)
    layer = model.net.features[2]
    expected = LayerRelevanceCam(model, layer).attribute(x, target=1)
    results: list = []
    model.block = True
    worker = threading.Thread(
        target=lambda: results.append(
            LayerRelevanceCam(model, layer).attribute(x, target=1)
        )
    )
    worker.start()
    try:
        assert model.entered.wait(timeout=30)
        model.block = False
        with pytest.raises(RuntimeError, match="another thread"):
            LayerShallowCam(model, layer).attribute(x, target=1)
    finally:
        model.release.set()
        worker.join(timeout=60)
    assert len(results) == 1
    ref.assert_close(results[0], expected)
    # afterwards the model can be explained again, with no hooks left behind
    assert all(counts == (0, 0, 0, 0) for counts in ref.hook_counts(model).values())
    ref.assert_close(LayerRelevanceCam(model, layer).attribute(x, target=1), expected)


def test_data_parallel_raises():
    model = models.SmallVgg().eval()
    wrapped = nn.DataParallel(model)
    with pytest.raises(TypeError, match="DataParallel"):
        LayerRelevanceCam(wrapped, model.features[2]).attribute(
            torch.randn(1, 3, 8, 8), target=0
        )


def test_identity_rule_on_softmax_head_and_unknown_leaf_message():
    from captum.testing.helpers.basic_models import BasicModel_ConvNet

    model = BasicModel_ConvNet().eval()
    x = torch.randn(1, 1, 10, 10)
    with pytest.raises(TypeError, match="softmax.*IdentityRule"):
        LayerRelevanceCam(model, model.relu2).attribute(x, target=0)
    maps = LayerRelevanceCam(
        model, model.relu2, rules={nn.Softmax: IdentityRule()}
    ).attribute(x, target=0)
    assert maps.shape == (1, 1, 2, 2)


# ------------------------------------------------------------- normalisation
class _NormNet(nn.Module):
    def __init__(self, norm: nn.Module) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = norm
        self.conv2 = nn.Conv2d(8, 6, 3)
        self.fc = nn.Linear(6, 4)
        self.frozen_shift: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(x)
        # The reference: the normalisation replaced by a constant shift to the
        # same values (a frozen element-wise map), which passes relevance on.
        h = self.norm(h) if self.frozen_shift is None else h + self.frozen_shift
        return self.fc(torch.relu(self.conv2(torch.relu(h))).mean((2, 3)))


@pytest.mark.parametrize(
    "make_norm",
    [
        lambda: nn.GroupNorm(2, 8),
        lambda: nn.LayerNorm([8, 6, 6]),
        lambda: torchvision.models.convnext.LayerNorm2d(8),
    ],
    ids=["GroupNorm", "LayerNorm", "LayerNorm2d (channels-last, ConvNeXt)"],
)
def test_normalisation_layers_pass_relevance_through(make_norm):
    """GroupNorm and LayerNorm (no rule needed) pass relevance on element by
    element: the maps below them equal those of the same net with the
    normalisation frozen into a constant shift."""
    torch.manual_seed(41)
    model = _NormNet(make_norm()).eval()
    with torch.no_grad():
        model.norm.weight.uniform_(0.5, 1.5)
        model.norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 3, 6, 6)
    cam = LayerRelevanceCam(model, model.conv1)
    kwargs = dict(
        target=[0, 3], initial_relevance="target", return_convergence_delta=True
    )
    maps, delta = cam.attribute(x, **kwargs)
    with torch.no_grad():
        h = model.conv1(x)
        model.frozen_shift = model.norm(h) - h
    expected, expected_delta = cam.attribute(x, **kwargs)
    assert float(expected.abs().max()) > 0
    ref.assert_close(maps, expected, rtol=1e-5)
    # Conserved up to float32 rounding, the same as the reference's (1e-5 here).
    ref.assert_close(delta, expected_delta, atol=1e-6)
    assert float(delta.abs().max()) < 1e-4


def test_a_rule_given_to_a_normalisation_layer_is_used():
    """The pass-through is a default: a user's EpsilonRule on LayerNorm applies
    the z-rule to the module as a whole (and, with a large epsilon, absorbs
    relevance); a weight rule is refused as for an unknown module."""
    torch.manual_seed(45)
    model = _NormNet(nn.LayerNorm([8, 6, 6])).eval()
    x = torch.randn(2, 3, 6, 6)
    kwargs = dict(
        target=[0, 3],
        initial_relevance="target",
        return_convergence_delta=True,
        check_conservation=False,
    )
    _, passed = LayerRelevanceCam(model, model.conv1).attribute(x, **kwargs)
    absorbing = {nn.LayerNorm: EpsilonRule(epsilon=1e3)}
    _, absorbed = LayerRelevanceCam(model, model.conv1, rules=absorbing).attribute(
        x, **kwargs
    )
    assert float(passed.abs().max()) < 1e-4
    assert bool((absorbed.abs() > 0.5).all())
    with pytest.raises(TypeError, match=r"'norm' \(LayerNorm\) is a normalisation"):
        LayerRelevanceCam(
            model, model.conv1, rules={nn.LayerNorm: GammaRule()}
        ).attribute(x, target=0)


class _Square(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x * x


class _TwoUnknownLeaves(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.square = _Square()
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 8 * 8, 3), nn.Softmax(1))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.square(self.conv(x)))


def test_every_module_without_a_rule_is_named_in_one_error():
    """A model with two unknown leaf types gets one error naming both modules
    and a ``rules`` example covering both types; following it works, and the
    failed call leaves no hooks behind."""
    torch.manual_seed(42)
    model = _TwoUnknownLeaves().eval()
    x = torch.randn(2, 1, 10, 10)
    with pytest.raises(TypeError) as error:
        LayerShallowCam(model, model.conv).attribute(x, target=0)
    message = str(error.value)
    assert message.startswith("2 modules have no LRP rule")
    assert "'square' (_Square, MulBackward0)" in message
    assert "'head.2' (Softmax, SoftmaxBackward0)" in message
    assert "rules={_Square: IdentityRule(), Softmax: IdentityRule()}" in message
    assert all(
        not m._forward_hooks and not m._forward_pre_hooks for m in model.modules()
    )
    rules = {_Square: IdentityRule(), nn.Softmax: IdentityRule()}
    maps = LayerShallowCam(model, model.conv, rules=rules).attribute(x, target=0)
    assert maps.shape == (2, 1, 8, 8) and bool(torch.isfinite(maps).all())


class _SpaceToDepth(nn.Module):
    """Each 2 x 2 block of pixels to 4 channels, written with reshape and
    permute (as einops' Rearrange or a window partition is): a copy, not a view."""

    def forward(self, x: Tensor) -> Tensor:
        return _space_to_depth(x)


def _space_to_depth(x: Tensor) -> Tensor:
    n, c, h, w = x.shape
    # Channels ordered (row in block, column in block, channel), so that an
    # output channel holds several input channels' pixels.
    blocks = x.reshape(n, c, h // 2, 2, w // 2, 2).permute(0, 3, 5, 1, 2, 4)
    return blocks.reshape(n, c * 4, h // 2, w // 2)


class _SpaceToDepthNet(nn.Module):
    def __init__(self, as_module: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.to_depth = _SpaceToDepth() if as_module else None
        self.conv2 = nn.Conv2d(16, 5, 3)
        self.fc = nn.Linear(5, 3)

    def forward(self, x: Tensor) -> Tensor:
        h = self.relu(self.conv1(x))
        h = self.to_depth(h) if self.to_depth is not None else _space_to_depth(h)
        return self.fc(torch.relu(self.conv2(h)).mean((2, 3)))


def test_a_module_that_only_rearranges_needs_no_rule():
    """A leaf module whose output is its input reshaped and permuted passes
    relevance back by its ordinary backward, as the same operations written in
    the parent's forward do: the maps below it are equal, with no rule given."""
    torch.manual_seed(43)
    inline = _SpaceToDepthNet(as_module=False).eval()
    module = _SpaceToDepthNet(as_module=True).eval()
    module.load_state_dict(inline.state_dict())
    x = torch.randn(2, 3, 8, 8)
    kwargs = dict(
        target=[0, 2], initial_relevance="target", return_convergence_delta=True
    )
    expected, expected_delta = LayerRelevanceCam(inline, inline.relu).attribute(
        x, **kwargs
    )
    maps, delta = LayerRelevanceCam(module, module.relu).attribute(x, **kwargs)
    assert float(expected.abs().max()) > 0
    ref.assert_close(maps, expected, rtol=1e-5)
    ref.assert_close(delta, expected_delta, atol=1e-7)


def test_identity_rule_on_a_rearranging_module_follows_the_rearrangement():
    """IdentityRule given to a module that permutes its input sends each
    output's relevance back to the input it came from (not to the input at the
    same flat index)."""
    torch.manual_seed(44)
    inline = _SpaceToDepthNet(as_module=False).eval()
    module = _SpaceToDepthNet(as_module=True).eval()
    module.load_state_dict(inline.state_dict())
    x = torch.randn(2, 3, 8, 8)
    expected = LayerRelevanceCam(inline, inline.relu).attribute(x, target=[0, 2])
    maps = LayerRelevanceCam(
        module, module.relu, rules={_SpaceToDepth: IdentityRule()}
    ).attribute(x, target=[0, 2])
    ref.assert_close(maps, expected, rtol=1e-5)
