"""Shared pytest fixtures for captum_shallowcam."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed_torch() -> None:
    """Make every test start from the same torch RNG state."""
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def efficientnet_lite0():
    """The pretrained EfficientNet-Lite0 (weights ship in a pip package).

    Loaded once per session; tests must not modify it (it is in eval mode).
    """
    from captum_shallowcam.models import load_model

    return load_model("efficientnet-lite0")
