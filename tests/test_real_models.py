"""The relevance methods on real architectures: conservation and Captum interplay.

torchvision models are built with random weights (``weights=None``) at 64 x 64
to keep the suite fast; EfficientNet-Lite0 is the real pretrained network at
224 x 224 on a smooth synthetic image.
"""

from __future__ import annotations

import functools
import warnings

import _reference as ref
import pytest
import torch
import torch.nn.functional as F
import torchvision
from captum.attr import LayerAttribution, LayerGradCam, NoiseTunnel
from captum.metrics import infidelity, sensitivity_max
from captum.testing.helpers.basic_models import BasicModel_ConvNet
from torch import Tensor, nn

from captum_shallowcam import LayerCam, LayerRelevanceCam, LayerShallowCam
from captum_shallowcam.rules import IdentityRule

#: Largest |sum of initial relevance - sum of relevance at the layer| accepted,
#: per example. With one-hot ("target") relevance the total is 1, so this is
#: "the relevance at the layer sums to 1 within 0.1%". The z+ rule, the
#: proportional pool rules, winner-take-all max-pooling, the folded BatchNorm and
#: the |a|/(|a|+|b|) residual split all conserve exactly; what remains is float32
#: rounding (measured: below 2e-5 on every model here).
CONSERVATION_TOL = 1e-3

# model name -> (constructor, shallow layer, deep layer)
TORCHVISION = {
    "vgg16": (torchvision.models.vgg16, "features.4", "features.30"),
    "vgg16_bn": (torchvision.models.vgg16_bn, "features.6", "features.43"),
    "resnet18": (torchvision.models.resnet18, "layer1", "layer4"),
    "resnet50": (torchvision.models.resnet50, "layer1", "layer4"),
    # LayerNorm on channels-last maps, linear layers on N x H x W x C.
    "convnext_tiny": (torchvision.models.convnext_tiny, "features.1", "features.7"),
    # Hardswish, squeeze-and-excitation with hardsigmoid gates.
    "mobilenet_v3_small": (
        torchvision.models.mobilenet_v3_small,
        "features.1",
        "features.12",
    ),
    # SiLU, squeeze-and-excitation, stochastic depth.
    "efficientnet_b0": (torchvision.models.efficientnet_b0, "features.2", "features.8"),
    # Dense concatenation, BatchNorm not after a conv.
    "densenet121": (
        torchvision.models.densenet121,
        "features.denseblock1",
        "features.norm5",
    ),
    # Grouped convs, squeeze-and-excitation.
    "regnet_y_400mf": (
        torchvision.models.regnet_y_400mf,
        "trunk_output.block1",
        "trunk_output.block4",
    ),
    # Channel split and shuffle.
    "shufflenet_v2_x0_5": (torchvision.models.shufflenet_v2_x0_5, "stage2", "conv5"),
    # Fire modules (concatenation), no BatchNorm.
    "squeezenet1_1": (torchvision.models.squeezenet1_1, "features.3", "features.12"),
    # Inception branches, input transform.
    "googlenet": (
        functools.partial(
            torchvision.models.googlenet, aux_logits=False, init_weights=True
        ),
        "inception3a",
        "inception5b",
    ),
}


@functools.cache
def _torchvision(name: str) -> nn.Module:
    torch.manual_seed(0)
    return TORCHVISION[name][0](weights=None).eval()


def _module(model: nn.Module, name: str) -> nn.Module:
    return dict(model.named_modules())[name]


def _smooth_image(size: int = 224) -> Tensor:
    """A smooth synthetic RGB image in [0, 1] (1 x 3 x size x size)."""
    yy, xx = torch.meshgrid(
        torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij"
    )
    blob = torch.exp(-((xx - 0.55) ** 2 + (yy - 0.45) ** 2) / 0.04)
    image = torch.stack(
        [
            0.5 + 0.35 * torch.sin(6 * xx) * torch.cos(4 * yy),
            0.25 + 0.6 * blob,
            0.3 + 0.5 * yy,
        ]
    )
    return image.clamp(0, 1)[None]


def _assert_conserves(model, layers, x, target, rules=None):
    """|delta| <= CONSERVATION_TOL with one-hot relevance at every layer, and no
    conservation warning with the default contrastive relevance."""
    cam = LayerRelevanceCam(model, layers, rules=rules)
    maps, deltas = cam.attribute(
        x, target=target, initial_relevance="target", return_convergence_delta=True
    )
    for layer_maps, delta in zip(maps, deltas):
        assert delta.shape == (x.shape[0],)
        assert float(delta.abs().max()) <= CONSERVATION_TOL, delta
        assert bool(torch.isfinite(layer_maps).all())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        maps, deltas = cam.attribute(x, target=target, return_convergence_delta=True)
    for delta in deltas:
        assert float(delta.abs().max()) <= CONSERVATION_TOL, delta
    return maps


@pytest.mark.parametrize("name", list(TORCHVISION))
def test_relevance_is_conserved_on_torchvision_models(name):
    model = _torchvision(name)
    _, shallow, deep = TORCHVISION[name]
    layers = [_module(model, shallow), _module(model, deep)]
    x = torch.randn(1, 3, 64, 64)
    maps = _assert_conserves(model, layers, x, 500)
    assert maps[0].shape[-1] > maps[1].shape[-1]


def test_relevance_is_conserved_on_pretrained_efficientnet_lite0(efficientnet_lite0):
    lm = efficientnet_lite0
    x = (_smooth_image() - 0.5) / 0.5  # the model's normalisation
    layers = [lm.layers["stage2"], lm.layers["stage6"]]
    maps = _assert_conserves(lm.model, layers, x, None)
    assert [m.shape for m in maps] == [(1, 1, 56, 56), (1, 1, 7, 7)]
    assert not lm.model.training


def test_relevance_is_conserved_on_captum_basic_convnet():
    model = BasicModel_ConvNet().eval()
    x = torch.randn(2, 1, 10, 10)
    # The model ends in a Softmax module, which gets no rule by default.
    rules = {nn.Softmax: IdentityRule()}
    _assert_conserves(model, [model.relu1, model.relu2], x, [0, 7], rules=rules)


# ------------------------------------------- functional residual additions
class _Block(nn.Module):
    def __init__(self, channels: int, inplace_add: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.inplace_add = inplace_add

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.inplace_add:
            out += identity
        else:
            out = out + identity
        return self.relu(out)


class _ResidualNet(nn.Module):
    def __init__(self, inplace_add: bool) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.block1 = _Block(8, inplace_add)
        self.block2 = _Block(8, inplace_add)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: Tensor) -> Tensor:
        x = self.block2(self.block1(self.stem(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


@pytest.mark.parametrize(
    "inplace_add", [False, True], ids=["out=out+identity", "out+=identity"]
)
def test_functional_residual_add_conserves(inplace_add):
    torch.manual_seed(4)
    model = _ResidualNet(inplace_add).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    x = torch.randn(2, 3, 12, 12)
    _assert_conserves(model, [model.stem, model.block1, model.block2], x, [1, 3])
    # both spellings of the add give the same maps
    other = _ResidualNet(not inplace_add).eval()
    other.load_state_dict(model.state_dict())
    ref.assert_close(
        LayerShallowCam(model, model.block1).attribute(x, target=[1, 3]),
        LayerShallowCam(other, other.block1).attribute(x, target=[1, 3]),
    )


# ----------------------------------------------------------- Captum interplay
@pytest.mark.parametrize("method", [LayerCam, LayerRelevanceCam, LayerShallowCam])
def test_noise_tunnel_smoothgrad(method):
    model = _torchvision("resnet18")
    x = torch.randn(1, 3, 64, 64)
    nt = NoiseTunnel(method(model, model.layer2))
    smoothed = nt.attribute(x, nt_type="smoothgrad", nt_samples=2, target=0)
    assert smoothed.shape == (1, 1, 8, 8)
    assert bool(torch.isfinite(smoothed).all()) and float(smoothed.max()) > 0
    # without noise the tunnel's mean is the plain map
    plain = method(model, model.layer2).attribute(x, target=0)
    no_noise = nt.attribute(x, nt_type="smoothgrad", nt_samples=2, stdevs=0.0, target=0)
    ref.assert_close(no_noise, plain, rtol=1e-4)


def test_noise_tunnel_over_a_list_of_layers_fails_in_captum():
    """Documented (docs/api.rst, README): Captum's NoiseTunnel accepts only a
    tensor or a tuple as the result, so a list of layers cannot be smoothed.
    If Captum lifts the limit this test fails: then update the docs."""
    model = _torchvision("resnet18")
    nt = NoiseTunnel(LayerCam(model, [model.layer1, model.layer2]))
    with pytest.raises(AssertionError, match="must be a torch.Tensor or a tuple"):
        nt.attribute(
            torch.randn(1, 3, 64, 64), nt_type="smoothgrad", nt_samples=2, target=0
        )


def test_target_none_is_the_prediction_where_captum_refuses():
    """Documented difference: Captum's LayerGradCam needs a target for a
    classifier's N x C output; ours explain the predicted class."""
    model = _torchvision("resnet18")
    x = torch.randn(2, 3, 64, 64)
    with pytest.raises(AssertionError, match="Target not provided"):
        LayerGradCam(model, model.layer2).attribute(x)
    predicted = model(x).argmax(1)
    ref.assert_close(
        LayerCam(model, model.layer2).attribute(x),
        LayerCam(model, model.layer2).attribute(x, target=predicted),
    )


@pytest.mark.parametrize("method", [LayerCam, LayerShallowCam])
def test_captum_sensitivity_max_and_infidelity(method):
    """captum.metrics.sensitivity_max reads the explanation as a tuple (Captum's
    LayerGradCam needs the same one-line wrapper). Without perturbation the
    maps of the expanded batch (targets repeated per sample) are the maps of
    the original one: sensitivity 0; with noise it is positive and finite.
    infidelity runs on the map brought to the input's shape."""
    model = _torchvision("resnet18")
    cam = method(model, model.layer2)

    def explain(inputs, **kwargs):  # noqa: ANN001, ANN003
        return (cam.attribute(inputs, **kwargs),)

    x = torch.randn(2, 3, 64, 64)
    target = torch.tensor([0, 7])
    unperturbed = sensitivity_max(
        explain,
        x,
        perturb_func=lambda inputs: inputs,
        n_perturb_samples=3,
        target=target,
    )
    # Relative to the map's norm; float32 rounding of a batch of 6 against 2
    # (measured: 3e-6 for LayerShallowCam).
    ref.assert_close(unperturbed, torch.zeros(2), atol=2e-5)
    noisy = sensitivity_max(explain, x, n_perturb_samples=3, target=target)
    assert (
        noisy.shape == (2,) and bool((noisy > 0).all()) and bool(noisy.isfinite().all())
    )
    # infidelity wants the input's shape: the map upsampled, over every channel.
    maps = cam.attribute(x, target=target)
    at_input = LayerAttribution.interpolate(maps, x.shape[-2:], "bilinear").expand_as(x)

    def perturb(inputs):  # noqa: ANN001
        noise = 0.1 * torch.randn_like(inputs)
        return noise, inputs - noise

    score = infidelity(model, perturb, x, at_input, n_perturb_samples=3, target=target)
    assert score.shape == (2,) and bool(score.isfinite().all())


def test_interpolate_to_input_size():
    model = _torchvision("resnet18")
    x = torch.randn(2, 3, 64, 64)
    maps = LayerShallowCam(model, model.layer1).attribute(x, target=[0, 1])
    up = LayerAttribution.interpolate(maps, (64, 64), "bilinear")
    assert up.shape == (2, 1, 64, 64)
    ref.assert_close(up, F.interpolate(maps, size=(64, 64), mode="bilinear"))
    assert float(up.min()) >= 0  # bilinear of a non-negative map


@pytest.mark.parametrize("method", [LayerCam, LayerRelevanceCam, LayerShallowCam])
def test_list_of_layers_equals_separate_calls_on_resnet18(method):
    model = _torchvision("resnet18")
    x = torch.randn(2, 3, 64, 64)
    layers = [model.layer1, model.layer2, model.layer3]
    together = method(model, layers).attribute(x, target=[7, 9])
    assert [m.shape[-1] for m in together] == [16, 8, 4]
    for layer, maps in zip(layers, together):
        ref.assert_close(
            maps, method(model, layer).attribute(x, target=[7, 9]), rtol=1e-5
        )
