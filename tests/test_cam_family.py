"""Grad-CAM++, XGrad-CAM, Score-CAM, Ablation-CAM, Group-CAM and Integrated
Grad-CAM against independent computations.

Where pytorch-grad-cam or torchcam computes the same formula the maps are
compared with theirs (their raw maps at the layer's resolution, before their
resizing and scaling); otherwise with a reference written step by step from the
authors' code in ``tests/_reference.py``.
"""

from __future__ import annotations

import _reference as ref
import pytest
import torch
from captum.attr import LayerAttribution
from models import sequential_bn_net
from torch import Tensor, nn

from captum_shallowcam import (
    LayerAblationCam,
    LayerGradCamPlusPlus,
    LayerGroupCam,
    LayerIntegratedGradCam,
    LayerScoreCam,
    LayerXGradCam,
)

GRADIENT_METHODS = [LayerGradCamPlusPlus, LayerXGradCam]
PERTURBATION_METHODS = [
    LayerScoreCam,
    LayerAblationCam,
    LayerGroupCam,
    LayerIntegratedGradCam,
]
METHODS = GRADIENT_METHODS + PERTURBATION_METHODS
DESCRIPTIONS = {
    LayerScoreCam: "Score-CAM",
    LayerAblationCam: "Ablation-CAM",
    LayerGroupCam: "Group-CAM",
    LayerIntegratedGradCam: "Integrated Grad-CAM",
}
#: Options that keep the perturbation methods quick on the small models.
FAST = {LayerIntegratedGradCam: {"n_steps": 4}, LayerGroupCam: {"groups": 4}}


class Scaled(nn.Module):
    """The model's logits times a constant. pytorch-grad-cam adds 1e-6 to
    Grad-CAM++'s denominators, which dominates gradients below about 1e-3 (those
    of a random resnet18); scaling the logits makes the stabiliser negligible
    without changing which formula is computed."""

    def __init__(self, model: nn.Module, factor: float) -> None:
        super().__init__()
        self.model = model
        self.factor = factor

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x) * self.factor


@pytest.fixture(scope="module")
def images() -> Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def lite0_image() -> Tensor:
    # 128 x 128 keeps the perturbation tests quick (stage2 is then 32 x 32)
    return torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(2))


def conv_net() -> nn.Module:
    """Two convolutions, 16 channels each: the authors' one-channel-at-a-time
    references stay quick."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 4),
    ).eval()


# ------------------------------------------------------- peers' raw maps
def grad_cam_peer(cls, model: nn.Module, layer: nn.Module, x: Tensor, targets):
    """A pytorch-grad-cam method's map at the layer's resolution, before its
    ReLU, resize and scaling (``get_cam_image``'s result)."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    class Recording(cls):
        def get_cam_image(self, *args, **kwargs):
            cam = super().get_cam_image(*args, **kwargs)
            self.raw = torch.as_tensor(cam)[:, None]
            return cam

    try:
        with Recording(model=model, target_layers=[layer]) as cam:
            cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in targets])
            return cam.raw.float()
    finally:
        # its backward fills parameter .grad of the shared models
        for parameter in model.parameters():
            parameter.grad = None


def torchcam_peer(cls, model: nn.Module, layer: nn.Module, x: Tensor, targets):
    """A torchcam method's ReLU'd map at the layer's resolution, unscaled."""
    extractor = cls(model, target_layer=layer, input_shape=tuple(x.shape[1:]))
    try:
        scores = model(x)
        return extractor(class_idx=targets, scores=scores, normalized=False)[0][:, None]
    finally:
        extractor.remove_hooks()


# ------------------------------------------------------------ Grad-CAM++
def test_grad_cam_plus_plus_equation_19_matches_pytorch_grad_cam(resnet18, images):
    from pytorch_grad_cam import GradCAMPlusPlus

    model = Scaled(resnet18, 1000.0)
    for layer in (resnet18.layer3, resnet18.layer4):
        ours = LayerGradCamPlusPlus(model, layer).attribute(
            images, target=[1, 2], normalize_coefficients=False, relu_attributions=False
        )
        peer = grad_cam_peer(GradCAMPlusPlus, model, layer, images, [1, 2])
        assert ours.shape == peer.shape == (2, 1, *ours.shape[2:])
        ref.assert_close(ours, peer, rtol=1e-4)


@pytest.mark.parametrize("layer_name", ["layer3", "layer4"])
def test_grad_cam_plus_plus_matches_authors_code_resnet18(resnet18, images, layer_name):
    layer = getattr(resnet18, layer_name)
    a, g = ref.hooked_activation_and_gradient(resnet18, layer, images, [1, 2])
    expected = ref.grad_cam_plus_plus_authors(a, g)
    cam = LayerGradCamPlusPlus(resnet18, layer)
    ref.assert_close(
        cam.attribute(images, target=[1, 2], relu_attributions=False),
        expected,
        rtol=1e-4,
    )
    ref.assert_close(
        cam.attribute(images, target=[1, 2]), torch.relu(expected), rtol=1e-4
    )


def test_grad_cam_plus_plus_matches_authors_code_lite0(efficientnet_lite0, lite0_image):
    model, layer = efficientnet_lite0.model, efficientnet_lite0.layers["stage2"]
    a, g = ref.hooked_activation_and_gradient(model, layer, lite0_image, [5])
    expected = ref.grad_cam_plus_plus_authors(a, g)
    ours = LayerGradCamPlusPlus(model, layer).attribute(
        lite0_image, target=5, relu_attributions=False
    )
    assert float(expected.abs().max()) > 0
    ref.assert_close(ours, expected, rtol=1e-3)


# ------------------------------------------------------------ XGrad-CAM
def test_xgrad_cam_matches_pytorch_grad_cam_and_torchcam(
    resnet18, images, efficientnet_lite0, lite0_image
):
    from pytorch_grad_cam import XGradCAM
    from torchcam.methods import XGradCAM as TorchcamXGradCAM

    lite0, stage2 = efficientnet_lite0.model, efficientnet_lite0.layers["stage2"]
    cases = [
        (resnet18, resnet18.layer3, images, [1, 2]),
        (resnet18, resnet18.layer4, images, [1, 2]),
        (lite0, stage2, lite0_image, [5]),
    ]
    for model, layer, x, targets in cases:
        cam = LayerXGradCam(model, layer)
        signed = cam.attribute(x, target=targets, relu_attributions=False)
        # eps: ours 1e-6 (the authors'), pytorch-grad-cam 1e-7, torchcam 1e-8
        peer = grad_cam_peer(XGradCAM, model, layer, x, targets)
        ref.assert_close(signed, peer, rtol=1e-4)
        peer = torchcam_peer(TorchcamXGradCAM, model, layer, x, targets)
        ref.assert_close(cam.attribute(x, target=targets), peer, rtol=1e-4)


# ------------------------------------------------------------ Score-CAM
@pytest.mark.parametrize("layer_index", [2, 4])
def test_score_cam_matches_authors_code(images, layer_index):
    net = conv_net()
    layer = net[layer_index]
    x = images[:, :, :32, :32]
    maps = LayerScoreCam(net, layer).attribute(
        x, target=[1, 2], relu_attributions=False, max_examples_per_batch=7
    )
    for i, c in enumerate([1, 2]):
        expected = ref.score_cam_authors(net, layer, x[i : i + 1], c)
        upsampled = LayerAttribution.interpolate(maps[i : i + 1], (32, 32), "bilinear")
        assert float(expected.max()) > 0
        ref.assert_close(torch.relu(upsampled), expected, rtol=1e-4)


def test_score_cam_matches_authors_code_lite0(efficientnet_lite0, lite0_image):
    model, layer = efficientnet_lite0.model, efficientnet_lite0.layers["stage2"]
    maps = LayerScoreCam(model, layer).attribute(
        lite0_image, target=5, relu_attributions=False
    )
    expected = ref.score_cam_authors(model, layer, lite0_image, 5)
    upsampled = LayerAttribution.interpolate(maps, (128, 128), "bilinear")
    ref.assert_close(torch.relu(upsampled), expected, rtol=1e-4)


# ---------------------------------------------------------- Ablation-CAM
def test_ablation_cam_matches_pytorch_grad_cam(resnet18, images):
    from pytorch_grad_cam import AblationCAM

    # layer3 ends with a ReLU: pytorch-grad-cam then ablates with 0, as we do
    layer = resnet18.layer3
    x = images[:1, :, :32, :32]
    ours = LayerAblationCam(resnet18, layer).attribute(
        x, target=[2], relu_attributions=False
    )
    peer = grad_cam_peer(AblationCAM, resnet18, layer, x, [2])
    ref.assert_close(ours, peer, rtol=1e-4)


def test_ablation_cam_works_on_efficientnet_lite0(efficientnet_lite0, lite0_image):
    # The stage is an MBConvBlock called with a keyword argument
    # (drop_connect_rate); the channel is zeroed by a hook, no module replaced.
    model, layer = efficientnet_lite0.model, efficientnet_lite0.layers["stage2"]
    before = ref.model_fingerprint(model)
    maps = LayerAblationCam(model, layer).attribute(
        lite0_image, target=5, relu_attributions=False
    )
    expected = ref.ablation_cam_reference(model, layer, lite0_image, 5)
    assert maps.shape == (1, 1, 32, 32)
    ref.assert_close(maps, expected, rtol=1e-4)
    _assert_unchanged(model, before)


# ------------------------------------------------------------- Group-CAM
@pytest.mark.parametrize("groups", [8, 32])
def test_group_cam_matches_authors_code(resnet18, images, groups):
    layer = resnet18.layer3
    maps = LayerGroupCam(resnet18, layer).attribute(
        images, target=[1, 3], groups=groups
    )
    peaks = []
    for i, c in enumerate([1, 3]):
        expected = ref.group_cam_authors(resnet18, layer, images[i : i + 1], c, groups)
        upsampled = LayerAttribution.interpolate(maps[i : i + 1], (64, 64), "bilinear")
        peaks.append(float(expected.max()))
        ref.assert_close(upsampled, expected, rtol=1e-4)
    # a random network's probabilities barely move: some group must still count
    assert max(peaks) > 0


def test_group_cam_constant_group_maps_weigh_nothing_whatever_the_batch(
    resnet18, images
):
    """At a 1 x 1 layer every group map is constant, its mask all zero and its
    input the blurred image: the weights, and so the maps, are exactly 0, in a
    batch or alone (float noise between forwards of other batch sizes once
    gave one example 7% of the peak)."""
    cam = LayerGroupCam(resnet18, resnet18.avgpool)
    together = cam.attribute(images, target=[1, 3], groups=8)
    alone = cam.attribute(images[1:], target=3, groups=8)
    assert together.shape == (2, 1, 1, 1)
    assert bool((together == 0).all()) and bool((alone == 0).all())


def test_group_cam_blur_too_large_for_the_images_names_the_option():
    model = sequential_bn_net()
    with pytest.raises(ValueError, match="blur_kernel_size"):
        LayerGroupCam(model, model[4]).attribute(torch.randn(1, 3, 20, 20), target=0)
    maps = LayerGroupCam(model, model[4]).attribute(
        torch.randn(1, 3, 20, 20), target=0, blur_kernel_size=11, blur_sigma=5.0
    )
    assert maps.shape == (1, 1, 20, 20)


# -------------------------------------------------- Integrated Grad-CAM
@pytest.mark.parametrize("layer_name", ["layer3", "layer4"])
def test_integrated_grad_cam_matches_authors_code(resnet18, images, layer_name):
    layer = getattr(resnet18, layer_name)
    maps = LayerIntegratedGradCam(resnet18, layer).attribute(
        images, target=[1, 2], n_steps=8, max_examples_per_batch=5
    )
    for i, c in enumerate([1, 2]):
        expected = ref.integrated_grad_cam_authors(
            resnet18, layer, images[i : i + 1], c, 8
        )
        assert float(expected.max()) > 0
        ref.assert_close(maps[i : i + 1], expected, rtol=1e-4)


def test_integrated_grad_cam_without_per_step_relu_sums_signed_terms(resnet18, images):
    layer = resnet18.layer4
    signed = LayerIntegratedGradCam(resnet18, layer).attribute(
        images[:1], target=3, n_steps=4, per_step_relu=False, relu_attributions=False
    )
    path = torch.stack([images[0] * m / 4 for m in range(4)])
    a, g = ref.hooked_activation_and_gradient(resnet18, layer, path, [3] * 4)
    expected = (g.mean(dim=(2, 3), keepdim=True) * a).sum(1, keepdim=True).sum(0)
    ref.assert_close(signed, expected[None], rtol=1e-4)


def test_integrated_grad_cam_explains_the_inputs_predicted_class(resnet18, images):
    with torch.no_grad():
        predicted = resnet18(images).argmax(1).tolist()
    cam = LayerIntegratedGradCam(resnet18, resnet18.layer4)
    ref.assert_close(
        cam.attribute(images, n_steps=3),
        cam.attribute(images, target=predicted, n_steps=3),
    )


# ----------------------------------------------------- common behaviour
@pytest.mark.parametrize("method", METHODS)
def test_list_of_layers_returns_a_list_of_the_single_layer_maps(method, images):
    model = sequential_bn_net()
    layers = [model[2], model[4]]
    options = FAST.get(method, {})
    x = images[:, :, :32, :32]
    maps = method(model, layers).attribute(x, target=[0, 3], **options)
    assert isinstance(maps, list) and len(maps) == 2
    for layer, layer_map in zip(layers, maps):
        assert layer_map.shape == (2, 1, 32, 32)
        alone = method(model, layer).attribute(x, target=[0, 3], **options)
        ref.assert_close(layer_map, alone)


@pytest.mark.parametrize("method", PERTURBATION_METHODS)
def test_batch_size_does_not_change_the_maps(method, images):
    model = sequential_bn_net()
    x = images[:, :, :32, :32]
    cam = method(model, model[4])
    options = FAST.get(method, {})
    one = cam.attribute(x, target=[0, 3], max_examples_per_batch=1, **options)
    many = cam.attribute(x, target=[0, 3], max_examples_per_batch=1000, **options)
    assert float(many.abs().max()) > 0
    ref.assert_close(one, many, rtol=1e-5)


def _assert_unchanged(model: nn.Module, before: dict, training: bool = False) -> None:
    after = ref.model_fingerprint(model)
    for key, value in before["state"].items():
        assert torch.equal(after["state"][key], value), key
    assert after["dict_keys"] == before["dict_keys"]
    assert after["training"] == before["training"]
    assert model.training is training
    assert all(counts == (0, 0, 0, 0) for counts in ref.hook_counts(model).values())
    assert all(p.grad is None for p in model.parameters())


class FailsOnCall(nn.Module):
    """Raises in its ``fail_on``-th forward pass (after the first pass of a
    method, while its extra passes and hooks are running)."""

    def __init__(self, model: nn.Module, fail_on: int) -> None:
        super().__init__()
        self.model = model
        self.fail_on = fail_on
        self.calls = 0

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        if self.calls == self.fail_on:
            raise RuntimeError("boom")
        return self.model(x)


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("method", METHODS)
def test_model_unchanged_after_a_call_and_after_a_failing_call(
    method, training, images
):
    net = sequential_bn_net().train(training)
    x = images[:, :, :32, :32]
    before = ref.model_fingerprint(net)
    options = FAST.get(method, {})
    if method is LayerIntegratedGradCam:
        # with the targets given its first pass is the path's first batch:
        # two batches, so that the call fails in its second
        options = {**options, "max_examples_per_batch": 4}
    method(net, net[2]).attribute(x, target=[0, 3], **options)
    _assert_unchanged(net, before, training)
    failing = FailsOnCall(net, fail_on=1 if method in GRADIENT_METHODS else 2)
    with pytest.raises(RuntimeError, match="boom"):
        method(failing, net[2]).attribute(x, target=[0, 3], **options)
    _assert_unchanged(net, before, training)


@pytest.mark.parametrize("method", METHODS)
def test_input_checks_apply(method):
    model = sequential_bn_net()
    cam = method(model, model[4])
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(ValueError, match="out of range"):
        cam.attribute(x, target=9)
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        cam.attribute(bad, target=0)
    with pytest.raises(ValueError, match="not a submodule"):
        method(model, nn.Conv2d(3, 3, 1))


@pytest.mark.parametrize("method", PERTURBATION_METHODS)
def test_perturbation_methods_refuse_several_inputs_and_bad_batch_sizes(method):
    model = sequential_bn_net()
    cam = method(model, model[4])
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(TypeError, match="one input tensor"):
        cam.attribute((x, x), target=0)
    with pytest.raises(ValueError, match="at least 1"):
        cam.attribute(x, target=0, max_examples_per_batch=0)


@pytest.mark.parametrize("method", PERTURBATION_METHODS)
def test_progress_bar_and_no_grad_context(method, capsys):
    model = sequential_bn_net()
    x = torch.randn(1, 3, 32, 32)
    options = FAST.get(method, {})
    expected = method(model, model[4]).attribute(x, target=1, **options)
    with torch.no_grad():
        shown = method(model, model[4]).attribute(
            x, target=1, show_progress=True, **options
        )
    ref.assert_close(shown, expected)
    assert DESCRIPTIONS[method] in capsys.readouterr().err
