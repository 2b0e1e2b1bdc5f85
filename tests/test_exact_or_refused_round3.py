"""Issue 22, "exact or refused, round 3": each defect that gave silently wrong
output or a raw internal error, pinned by the behaviour that replaced it."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import Tensor, nn

from captum_shallowcam import LayerRelevanceCam, LayerShallowCam
from captum_shallowcam.rules import EpsilonRule, IdentityRule

RELEVANCE_METHODS = {
    "LayerRelevanceCam": LayerRelevanceCam,
    "LayerShallowCam": LayerShallowCam,
}


class SmallNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: Tensor) -> Tensor:
        h = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc(torch.flatten(self.pool(h), 1))


def small_net() -> SmallNet:
    torch.manual_seed(0)
    return SmallNet().eval()


def images(n: int = 2, size: int = 8, seed: int = 1) -> Tensor:
    torch.manual_seed(seed)
    return torch.randn(n, 3, size, size)


def quiet_attribute(method, x: Tensor, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # conservation
        return method.attribute(x, **kwargs)


# ------------------------------------------------------------- 1. autocast
@pytest.mark.parametrize("name", RELEVANCE_METHODS)
def test_relevance_under_autocast_equals_float32(name: str) -> None:
    model, x = small_net(), images(size=16)
    method = RELEVANCE_METHODS[name](model, model.relu1)
    want = quiet_attribute(method, x, target=[1, 3])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = quiet_attribute(method, x, target=[1, 3])
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


def test_autocast_is_back_on_after_the_call() -> None:
    model, x = small_net(), images()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        quiet_attribute(LayerShallowCam(model, model.relu1), x, target=0)
        assert torch.is_autocast_enabled("cpu")
        assert model(x).dtype == torch.bfloat16


# -------------------------------------------------- 3. rules that match nothing
@pytest.mark.parametrize("name", RELEVANCE_METHODS)
def test_a_misspelt_rule_key_is_refused_with_the_closest_names(name: str) -> None:
    model = small_net()
    with pytest.raises(ValueError, match="'c2x'.*closest names: 'conv2'"):
        RELEVANCE_METHODS[name](model, model.relu1, rules={"c2x": EpsilonRule(10)})


def test_a_rule_keyed_by_a_module_of_another_model_is_refused() -> None:
    model, other = small_net(), small_net()
    with pytest.raises(ValueError, match="not a module of the model"):
        LayerShallowCam(model, model.relu1, rules={other.conv2: EpsilonRule(10)})


def test_a_rule_keyed_by_the_second_name_of_a_shared_module_is_refused() -> None:
    model = small_net()
    model.relu_again = model.relu1  # one module, two names
    with pytest.raises(ValueError, match="second name of module 'relu1'"):
        LayerShallowCam(model, model.conv1, rules={"relu_again": IdentityRule()})


def test_rule_keys_that_match_still_work() -> None:
    model, x = small_net(), images()
    by_name = LayerShallowCam(model, model.relu1, rules={"conv2": EpsilonRule(10)})
    by_module = LayerShallowCam(
        model, model.relu1, rules={model.conv2: EpsilonRule(10)}
    )
    default = LayerShallowCam(model, model.relu1)
    # A type the model lacks is allowed: one rule map serves many models.
    by_type = LayerShallowCam(
        model, model.relu1, rules={nn.Conv2d: EpsilonRule(10), nn.Conv3d: EpsilonRule()}
    )
    named = quiet_attribute(by_name, x, target=0)
    torch.testing.assert_close(named, quiet_attribute(by_module, x, target=0))
    assert not torch.allclose(named, quiet_attribute(default, x, target=0))
    quiet_attribute(by_type, x, target=0)
