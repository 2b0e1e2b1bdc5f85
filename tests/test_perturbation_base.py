"""The public base of the perturbation CAM methods: a variant is one
``cam_weights`` over :class:`LayerPerturbationCam` (issue 21, code debt)."""

import pytest
import torch
from torch import Tensor, nn

from captum_shallowcam.attr import LayerPerturbationCam, PerturbationCall


class CountingNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4, 5)
        self.calls = 0  # forward calls, not a buffer: the base puts buffers back

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        return self.fc(self.relu(self.conv(x)).mean((2, 3)))


class LayerProbabilityCam(LayerPerturbationCam):
    """A toy variant: every channel weighs the probability of the class for
    the image scaled by ``scale``, one extra forward per example."""

    def attribute(self, inputs, target=None, scale=0.5, max_examples_per_batch=1):  # noqa: ANN001, ANN201
        return self._weighted_maps(
            inputs, target, None, False, True, max_examples_per_batch, False,
            scale=scale,
        )  # fmt: skip

    def check_options(self, images: Tensor, *, scale: float) -> None:
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}.")

    def prepare(self, images: Tensor, *, scale: float) -> Tensor:
        return images * scale

    def cam_weights(
        self, call: PerturbationCall, layer, activation, gradient, *, scale
    ):  # noqa: ANN001
        def build(lo: int, hi: int) -> tuple[Tensor, Tensor]:
            examples = torch.arange(lo, hi)
            return call.prepared[lo:hi], examples

        n, k = activation.shape[:2]
        probability = call.score_rows(n, build, "toy", softmax=True)
        return activation, probability[:, None].expand(n, k)


def net() -> CountingNet:
    torch.manual_seed(0)
    return CountingNet().eval()


def test_a_variant_is_its_weights_over_the_base():
    model, x = net(), torch.randn(3, 3, 6, 6)
    maps = LayerProbabilityCam(model, model.relu).attribute(x, target=[0, 1, 4])
    with torch.no_grad():
        activation = model.relu(model.conv(x))
        probability = torch.softmax(model(x * 0.5), 1)[[0, 1, 2], [0, 1, 4]]
    want = torch.relu((probability[:, None, None, None] * activation).sum(1, True))
    torch.testing.assert_close(maps, want)


def test_the_extra_forwards_run_in_batches_of_the_given_size():
    model, x = net(), torch.randn(3, 3, 6, 6)
    LayerProbabilityCam(model, model.relu).attribute(x, max_examples_per_batch=2)
    assert model.calls == 1 + 2  # the first pass, then 3 rows in 2 batches


def test_options_are_checked_before_any_forward():
    model = net()
    with pytest.raises(ValueError, match="scale must be positive"):
        LayerProbabilityCam(model, model.relu).attribute(
            torch.randn(1, 3, 6, 6), scale=0
        )
    assert model.calls == 0


def test_the_model_is_left_as_it_was():
    model, x = net(), torch.randn(2, 3, 6, 6)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    LayerProbabilityCam(model, [model.conv, model.relu]).attribute(x)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert all(
        not m._forward_hooks and not m._forward_pre_hooks for m in model.modules()
    )
    assert all(p.grad is None for p in model.parameters())
