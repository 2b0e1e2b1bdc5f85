"""Input dtypes (float32, float64, half precision), devices and grad modes."""

import copy
import unittest

import pytest
import torch
from captum.testing.helpers.basic import assertTensorAlmostEqual
from captum.testing.helpers.basic_models import BasicModel_ConvNet
from models import ResidualBlockNet, residual_block_net, resnet18
from torch import Tensor, nn

from captum_shallowcam import LayerCam, LayerRelevanceCam, LayerShallowCam
from captum_shallowcam.metrics import deletion_insertion
from captum_shallowcam.rules import IdentityRule

HALF_DTYPES = (torch.float16, torch.bfloat16)

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(
            not torch.cuda.is_available(), reason="needs a CUDA device"
        ),
    ),
]

# (method class, attribute kwargs) for every map formula.
CONFIGS = [
    (LayerCam, {}),
    (LayerCam, {"scaling": "tanh"}),
    (LayerRelevanceCam, {}),
    (LayerRelevanceCam, {"initial_relevance": "target"}),
    (LayerRelevanceCam, {"initial_relevance": "clrp"}),
    (LayerShallowCam, {"variant": "v1"}),
    (LayerShallowCam, {"variant": "v3", "channel_weights": "positive"}),
    (LayerShallowCam, {"variant": "v2"}),
]
CONFIG_IDS = [
    f"{cls.__name__}-{'-'.join(f'{v}' for v in kw.values()) or 'default'}"
    for cls, kw in CONFIGS
]

# Captum's tensor assertions report through a TestCase.
TC = unittest.TestCase()


def resnet18_10_classes() -> nn.Module:
    return resnet18(num_classes=10)


def layers_of(model: nn.Module):
    if isinstance(model, ResidualBlockNet):
        return [model.relu, model.pool, model.relu3]
    return [model.layer1, model.layer2, model.layer3]


def inputs_for(model: nn.Module) -> Tensor:
    torch.manual_seed(1)
    size = 16 if isinstance(model, ResidualBlockNet) else 32
    return torch.randn(2, 3, size, size)


def attribute(cls, model, layers, x, **kwargs):
    return cls(model, layers).attribute(x, target=[1, 3], **kwargs)


def relative_error(a: Tensor, b: Tensor) -> float:
    scale = float(b.abs().max())
    return float((a.double() - b.double()).abs().max()) / max(scale, 1e-30)


# ------------------------------------------------------------ float32 / float64
# resnet18 (the slow one) for the three methods' defaults, the small net for all.
FLOAT64_CASES = [
    pytest.param(residual_block_net, cls, kw, id=f"smallnet-{name}")
    for (cls, kw), name in zip(CONFIGS, CONFIG_IDS)
] + [
    pytest.param(resnet18_10_classes, cls, kw, id=f"resnet18-{name}")
    for (cls, kw), name in zip(CONFIGS, CONFIG_IDS)
    if name in ("LayerCam-default", "LayerRelevanceCam-default", "LayerShallowCam-v1")
]


@pytest.mark.parametrize("make_model,cls,kwargs", FLOAT64_CASES)
def test_float64_maps_match_float32_maps(make_model, cls, kwargs) -> None:
    model = make_model()
    x = inputs_for(model)
    maps32 = attribute(cls, model, layers_of(model), x, **kwargs)
    model64 = copy.deepcopy(model).double()
    maps64 = attribute(cls, model64, layers_of(model64), x.double(), **kwargs)
    assert len(maps32) == len(maps64) == 3
    # Contrastive relevance sums +1 and -1/C: the cancellation costs digits in
    # float32, so its tolerance is looser than that of the other formulas.
    contrastive = cls is not LayerCam and kwargs.get("initial_relevance") is None
    tolerance = 1e-3 if contrastive else 1e-4
    for m32, m64 in zip(maps32, maps64):
        assert m32.dtype == torch.float32
        assert m64.dtype == torch.float64
        assert m32.shape == m64.shape
        assert bool(torch.isfinite(m64).all())
        assert float(m64.abs().max()) > 0, "an all-zero map compares nothing"
        assert relative_error(m32, m64) <= tolerance


@pytest.mark.parametrize("cls", [LayerRelevanceCam, LayerShallowCam])
def test_float64_convergence_delta_is_float64(cls) -> None:
    model = copy.deepcopy(residual_block_net()).double()
    x = inputs_for(model).double()
    maps, delta = cls(model, model.pool).attribute(
        x, target=1, initial_relevance="target", return_convergence_delta=True
    )
    assert maps.dtype == delta.dtype == torch.float64
    # Conservation at a cut layer holds up to the rules' 1e-9 stabilisers.
    assert float(delta.abs().max()) < 1e-5


def test_metric_float64_matches_float32() -> None:
    model = residual_block_net()
    x = inputs_for(model)
    maps = LayerCam(model, model.relu3).attribute(x, target=[1, 3])
    r32 = deletion_insertion(model, x, maps, target=[1, 3], step=32)
    model64 = copy.deepcopy(model).double()
    r64 = deletion_insertion(model64, x.double(), maps.double(), target=[1, 3], step=32)
    for name in r32._fields:
        v32, v64 = getattr(r32, name), getattr(r64, name)
        assert v32.dtype == torch.float32 and v64.dtype == torch.float64, name
        assertTensorAlmostEqual(TC, v32, v64.float(), delta=1e-5, mode="max")


# ---------------------------------------------------------------- half precision
@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=str)
@pytest.mark.parametrize("cls", [LayerRelevanceCam, LayerShallowCam])
@pytest.mark.parametrize("model_dtype", ["half_model", "float_model"])
def test_relevance_methods_refuse_half_precision(cls, dtype, model_dtype) -> None:
    model = residual_block_net()
    if model_dtype == "half_model":
        model = model.to(dtype)
    x = inputs_for(residual_block_net()).to(dtype)
    with pytest.raises(TypeError) as info:
        cls(model, model.pool).attribute(x, target=1)
    message = str(info.value)
    assert str(dtype) in message  # names the dtype ...
    assert ".float()" in message  # ... and the fix
    assert ".double()" in message


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=str)
def test_layer_cam_half_precision_on_cpu_works(dtype) -> None:
    """What LayerCam does with half inputs on the CPU: it computes the map in
    that dtype, close to the float32 map."""
    model = residual_block_net()
    x = inputs_for(model)
    reference = LayerCam(model, model.relu3).attribute(x, target=[1, 3])
    half_model = copy.deepcopy(model).to(dtype)
    maps = LayerCam(half_model, half_model.relu3).attribute(x.to(dtype), target=[1, 3])
    assert maps.dtype == dtype
    assert maps.shape == reference.shape
    assert bool(torch.isfinite(maps).all())
    assert float(maps.min()) >= 0
    assert relative_error(maps, reference) <= (0.05 if dtype == torch.float16 else 0.1)


def test_layer_cam_half_inputs_to_a_float_model_fail_in_torch() -> None:
    """Half inputs to a float32 model: LayerCam does not convert them; the
    model's own conv raises (PyTorch's dtype-mismatch message)."""
    model = residual_block_net()
    with pytest.raises(RuntimeError, match="should be the same"):
        LayerCam(model, model.relu3).attribute(inputs_for(model).half(), target=1)


# ------------------------------------------------------------------------ device
@pytest.fixture
def no_tf32():
    """GPU results are compared with the CPU's: compute in true float32."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.usefixtures("no_tf32")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cls,kwargs", CONFIGS, ids=CONFIG_IDS)
def test_outputs_are_on_the_inputs_device(device, cls, kwargs) -> None:
    model = residual_block_net()
    x = inputs_for(model)
    reference = attribute(cls, model, layers_of(model), x, **kwargs)
    model = copy.deepcopy(model).to(device)
    x = x.to(device)
    target = torch.tensor([1, 3], device=device)
    method = cls(model, layers_of(model))
    if cls is LayerCam:
        maps, deltas = method.attribute(x, target=target, **kwargs), []
    else:
        maps, deltas = method.attribute(
            x, target=target, return_convergence_delta=True, **kwargs
        )
    for cam, ref in zip(maps, reference):
        assert cam.device.type == torch.device(device).type
        assertTensorAlmostEqual(
            TC, cam.cpu(), ref, delta=1e-4 * float(ref.abs().max()) + 1e-7, mode="max"
        )
    for delta in deltas:
        if delta is not None:
            assert delta.device.type == torch.device(device).type


@pytest.mark.usefixtures("no_tf32")
@pytest.mark.parametrize("device", DEVICES)
def test_metric_outputs_are_on_the_inputs_device(device) -> None:
    model = residual_block_net().to(device)
    x = inputs_for(model).to(device)
    maps = LayerShallowCam(model, model.pool).attribute(x)
    assert maps.device.type == torch.device(device).type
    result = deletion_insertion(model, x, maps, step=64, max_examples_per_batch=3)
    for name, value in zip(result._fields, result):
        assert value.device.type == torch.device(device).type, name


# --------------------------------------------------------------------- grad modes
@pytest.mark.parametrize("cls,kwargs", CONFIGS, ids=CONFIG_IDS)
def test_outer_no_grad_does_not_change_the_maps(cls, kwargs) -> None:
    """DESIGN.md section 5: an outer ``torch.no_grad()`` must not break a method."""
    model = residual_block_net()
    x = inputs_for(model)
    expected = attribute(cls, model, layers_of(model), x, **kwargs)
    with torch.no_grad():
        maps = attribute(cls, model, layers_of(model), x, **kwargs)
    for cam, ref in zip(maps, expected):
        assertTensorAlmostEqual(TC, cam, ref, delta=0.0, mode="max")


@pytest.mark.parametrize("cls,kwargs", CONFIGS, ids=CONFIG_IDS)
def test_frozen_parameters_do_not_change_the_maps(cls, kwargs) -> None:
    model = residual_block_net()
    x = inputs_for(model)
    expected = attribute(cls, model, layers_of(model), x, **kwargs)
    for p in model.parameters():
        p.requires_grad_(False)
    maps = attribute(cls, model, layers_of(model), x, **kwargs)
    for cam, ref in zip(maps, expected):
        assertTensorAlmostEqual(TC, cam, ref, delta=0.0, mode="max")
    assert all(not p.requires_grad and p.grad is None for p in model.parameters())


def test_captum_basic_convnet_float64() -> None:
    """Captum's own test model (it ends in a Softmax module, which needs a rule
    for relevance) in float64 gives float64 maps for every method."""
    torch.manual_seed(0)
    model = BasicModel_ConvNet().double().eval()
    x = torch.randn(2, 1, 10, 10, dtype=torch.float64)
    methods = [
        LayerCam(model, model.conv2),
        LayerRelevanceCam(model, model.conv2, rules={nn.Softmax: IdentityRule()}),
        LayerShallowCam(model, model.conv2, rules={nn.Softmax: IdentityRule()}),
    ]
    for method in methods:
        maps = method.attribute(x, target=[0, 1])
        assert maps.dtype == torch.float64
        assert maps.shape == (2, 1, 2, 2)
        assert bool(torch.isfinite(maps).all())
