"""Issue 22, "exact or refused, round 3": each defect that gave silently wrong
output or a raw internal error, pinned by the behaviour that replaced it."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import Tensor, nn

from captum_shallowcam import LayerRelevanceCam, LayerShallowCam

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
