"""Shared pytest fixtures for captum_shallowcam."""

from __future__ import annotations

import os

import models
import pytest
import torch
from hypothesis import settings

torch.set_num_threads(2)

# CI (HYPOTHESIS_PROFILE=ci, set by .ci/run) replays the same generated
# examples on every run, so a landing cannot fail on a new random draw; runs
# elsewhere keep exploring new examples (and replay failures from .hypothesis).
settings.register_profile("ci", derandomize=True, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


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


# Shared models (tests/models.py); module-scoped, as the files that first
# defined them had them: a test module may not modify them.
@pytest.fixture(scope="module")
def resnet18():
    """torchvision's resnet18 with random weights (seed 0), eval mode."""
    return models.resnet18()


@pytest.fixture(scope="module")
def small_vgg():
    """:class:`models.SmallVgg` with the weights of seed 1."""
    return models.small_vgg(seed=1)


@pytest.fixture(scope="module")
def small_vgg_seed_11():
    """:class:`models.SmallVgg` with the weights of seed 11 (the explicit-LRP
    references of test_relevance_engine.py were written against these)."""
    return models.small_vgg(seed=11)
