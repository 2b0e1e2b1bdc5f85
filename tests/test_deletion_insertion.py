"""Tests for captum_shallowcam.metrics.deletion_insertion."""

import math

import pytest
import torch
import torch.nn as nn
from captum.attr import LayerAttribution
from captum.testing.helpers.basic_models import BasicModel_ConvNet_One_Conv
from models import ConvPoolLinearNet
from torch import Tensor
from torchvision.transforms.functional import gaussian_blur

from captum_shallowcam.metrics import DeletionInsertionResult, deletion_insertion


class RegionMean(nn.Module):
    """Outputs [mean of the top image row (all channels), 0] per image."""

    def forward(self, x: Tensor) -> Tensor:
        region = x[:, :, 0, :].mean(dim=(1, 2))
        return torch.stack([region, torch.zeros_like(region)], dim=1)


class Flatten(nn.Module):
    """Outputs the flattened first channel, one output per pixel."""

    def forward(self, x: Tensor) -> Tensor:
        return x[:, 0].flatten(1)


def first_output(outputs: Tensor, targets: Tensor) -> Tensor:
    return outputs[:, 0]


def weighted_pixels(outputs: Tensor, targets: Tensor) -> Tensor:
    """sum_p (p + 1) * x_p: removing pixel p lowers the score by p + 1."""
    weights = torch.arange(1, outputs.shape[1] + 1, dtype=outputs.dtype)
    return outputs @ weights


@pytest.fixture
def net() -> nn.Module:
    torch.manual_seed(0)
    return ConvPoolLinearNet().eval()


# --------------------------------------------------------------- closed form


@pytest.mark.parametrize(
    "step, del_curve, ins_curve",
    [
        # ranking: p1, p3, p5, p4, p2, p0; top row = p0, p1, p2.
        (2, [1, 2 / 3, 2 / 3, 0], [0.5, 2 / 3, 2 / 3, 1]),
        # step 4 does not divide 6 pixels: points at 0, 4 and 6 pixels.
        (4, [1, 2 / 3, 0], [0.5, 2 / 3, 1]),
    ],
)
def test_closed_form_toy_model(step: int, del_curve: list, ins_curve: list) -> None:
    inputs = torch.ones(1, 2, 2, 3, dtype=torch.float64)
    pixel = torch.tensor([[0.1, 0.9, 0.2], [0.8, 0.3, 0.5]], dtype=torch.float64)
    # input-shaped attributions, summed over channels to `pixel`.
    attributions = torch.stack([pixel, torch.zeros_like(pixel)]).unsqueeze(0)
    result = deletion_insertion(
        RegionMean(),
        inputs,
        attributions,
        target=0,
        step=step,
        insertion_substrate=torch.tensor(0.5, dtype=torch.float64),
        score_func=first_output,
    )
    n_points = len(del_curve)
    fractions = [min(k * step, 6) / 6 for k in range(n_points)]

    def trapezoid(ys: list) -> float:
        return sum(
            (fractions[k + 1] - fractions[k]) * (ys[k] + ys[k + 1]) / 2
            for k in range(n_points - 1)
        )

    assert isinstance(result, DeletionInsertionResult)
    expected = torch.tensor([del_curve], dtype=torch.float64)
    torch.testing.assert_close(result.deletion_curve, expected)
    expected = torch.tensor([ins_curve], dtype=torch.float64)
    torch.testing.assert_close(result.insertion_curve, expected)
    torch.testing.assert_close(
        result.fractions, torch.tensor(fractions, dtype=torch.float64)
    )
    torch.testing.assert_close(
        result.deletion_auc, torch.tensor([trapezoid(del_curve)], dtype=torch.float64)
    )
    torch.testing.assert_close(
        result.insertion_auc, torch.tensor([trapezoid(ins_curve)], dtype=torch.float64)
    )
    if step == 2:  # worked out by hand
        torch.testing.assert_close(result.deletion_auc.item(), 11 / 18)
        torch.testing.assert_close(result.insertion_auc.item(), 25 / 36)
    else:
        torch.testing.assert_close(result.deletion_auc.item(), 2 / 3)
        torch.testing.assert_close(result.insertion_auc.item(), 2 / 3 * 7 / 12 + 5 / 18)
    torch.testing.assert_close(
        result.overall, 100 * (result.insertion_auc - result.deletion_auc)
    )


# ------------------------------------------------------------- curve ends


def test_curve_end_points_are_unperturbed_and_fully_perturbed(net: nn.Module) -> None:
    torch.manual_seed(1)
    inputs = torch.randn(3, 3, 8, 8)
    target = [0, 3, 4]
    result = deletion_insertion(net, inputs, torch.randn(3, 1, 2, 2), target=target)

    def prob(x: Tensor) -> Tensor:
        return torch.softmax(net(x), dim=1)[torch.arange(3), target]

    with torch.no_grad():
        clean = prob(inputs)
        deleted = prob(torch.zeros_like(inputs))
        blurred = prob(gaussian_blur(inputs, kernel_size=11, sigma=5))
    torch.testing.assert_close(result.deletion_curve[:, 0], clean)
    torch.testing.assert_close(result.insertion_curve[:, -1], clean)
    torch.testing.assert_close(result.deletion_curve[:, -1], deleted)
    torch.testing.assert_close(result.insertion_curve[:, 0], blurred)
    # step 224 > 64 pixels: a single step perturbs everything.
    assert result.deletion_curve.shape == (3, 2)
    torch.testing.assert_close(result.fractions, torch.tensor([0.0, 1.0]))


def test_default_target_is_argmax(net: nn.Module) -> None:
    torch.manual_seed(2)
    inputs = torch.randn(4, 3, 6, 6)
    attributions = torch.randn(4, 6, 6)
    with torch.no_grad():
        predicted = net(inputs).argmax(dim=1)
    default = deletion_insertion(net, inputs, attributions, step=7)
    explicit = deletion_insertion(net, inputs, attributions, target=predicted, step=7)
    for a, b in zip(default, explicit, strict=True):
        torch.testing.assert_close(a, b)


# ------------------------------------------------------ reference python loop


def reference_loop(model, inputs, pixel_attr, target, step, del_sub, ins_sub):
    """Plain per-example, per-step loop, one forward call per image."""
    n, _, height, width = inputs.shape
    n_pixels = height * width
    n_points = math.ceil(n_pixels / step) + 1
    fractions = torch.tensor(
        [min(k * step, n_pixels) / n_pixels for k in range(n_points)]
    )
    del_curves, ins_curves = [], []
    for i in range(n):
        values = pixel_attr[i].flatten().tolist()
        order = sorted(range(n_pixels), key=lambda p: (-values[p], p))
        del_curve, ins_curve = [], []
        for k in range(n_points):
            top = order[: min(k * step, n_pixels)]
            deleted = inputs[i].clone().flatten(1)
            deleted[:, top] = del_sub[i].flatten(1)[:, top]
            inserted = ins_sub[i].clone().flatten(1)
            inserted[:, top] = inputs[i].flatten(1)[:, top]
            with torch.no_grad():
                for image, curve in ((deleted, del_curve), (inserted, ins_curve)):
                    out = model(image.view(1, -1, height, width))
                    curve.append(torch.softmax(out, dim=1)[0, target[i]].item())
        del_curves.append(del_curve)
        ins_curves.append(ins_curve)
    del_curves = torch.tensor(del_curves)
    ins_curves = torch.tensor(ins_curves)
    return (
        del_curves,
        ins_curves,
        torch.trapezoid(del_curves, x=fractions),
        torch.trapezoid(ins_curves, x=fractions),
        fractions,
    )


@pytest.mark.parametrize("substrates", ["default", "custom"])
def test_matches_reference_loop_step_not_dividing(net: nn.Module, substrates) -> None:
    torch.manual_seed(3)
    inputs = torch.randn(2, 3, 7, 9)
    pixel_attr = torch.randn(2, 7, 9)
    pixel_attr[0, 2:4, :] = 0.5  # some ties
    target = [1, 2]
    step = 5  # 63 pixels: 13 steps of 5, the last one perturbs 3 pixels
    if substrates == "default":
        kwargs = {}
        del_sub = torch.zeros_like(inputs)
        ins_sub = gaussian_blur(inputs, kernel_size=11, sigma=5)
    else:
        colour = torch.tensor([0.3, -0.2, 0.1]).view(3, 1, 1)
        kwargs = {
            "deletion_substrate": colour,
            "insertion_substrate": lambda x: x.flip(-1) * 0.5,
        }
        del_sub = colour.expand_as(inputs)
        ins_sub = inputs.flip(-1) * 0.5
    result = deletion_insertion(
        net, inputs, pixel_attr, target=target, step=step, **kwargs
    )
    expected = reference_loop(net, inputs, pixel_attr, target, step, del_sub, ins_sub)
    assert result.deletion_curve.shape == (2, 14)
    torch.testing.assert_close(result.deletion_curve, expected[0])
    torch.testing.assert_close(result.insertion_curve, expected[1])
    torch.testing.assert_close(result.deletion_auc, expected[2])
    torch.testing.assert_close(result.insertion_auc, expected[3])
    torch.testing.assert_close(result.fractions, expected[4])
    assert result.fractions[-2] == 60 / 63 and result.fractions[-1] == 1


# ------------------------------------------------------------------ batching


class CountingModel(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.batch_sizes: list[int] = []

    def forward(self, *args):
        self.batch_sizes.append(args[0].shape[0])
        return self.model(*args)


@pytest.mark.parametrize("max_batch", [1, 3, 1000])
def test_batch_equals_one_by_one_and_chunk_size(net: nn.Module, max_batch) -> None:
    torch.manual_seed(4)
    inputs = torch.randn(3, 3, 6, 7)
    attributions = torch.randn(3, 3, 6, 7)
    target = torch.tensor([0, 4, 2])
    scale = torch.tensor([1.0, 2.0, 0.5])
    counting = CountingModel(net)
    batched = deletion_insertion(
        counting,
        inputs,
        attributions,
        target=target,
        additional_forward_args=(scale,),
        step=4,
        max_examples_per_batch=max_batch,
    )
    n_points = math.ceil(42 / 4) + 1
    # unperturbed inputs once, then 2 * (S - 1) perturbed images per example.
    assert sum(counting.batch_sizes) == 3 * (2 * n_points - 1)
    assert max(counting.batch_sizes) <= max_batch
    for i in range(3):
        single = deletion_insertion(
            net,
            inputs[i : i + 1],
            attributions[i : i + 1],
            target=int(target[i]),
            additional_forward_args=scale[i : i + 1],
            step=4,
        )
        for a, b in zip(batched, single, strict=True):
            if a.dim() == 1 and a.shape[0] == n_points:  # fractions
                torch.testing.assert_close(a, b)
            else:
                torch.testing.assert_close(a[i : i + 1], b)


def test_independent_of_max_examples_per_batch(net: nn.Module) -> None:
    torch.manual_seed(5)
    inputs = torch.randn(2, 3, 8, 8)
    attributions = torch.randn(2, 1, 4, 4)
    results = [
        deletion_insertion(net, inputs, attributions, step=6, max_examples_per_batch=b)
        for b in (1, 3, 1000, None)
    ]
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            torch.testing.assert_close(a, b)


def test_captum_basic_model_and_float64() -> None:
    model = BasicModel_ConvNet_One_Conv().double().eval()
    torch.manual_seed(6)
    inputs = torch.randn(2, 1, 4, 4, dtype=torch.float64)
    result = deletion_insertion(
        model,
        inputs,
        torch.randn(2, 1, 2, 2, dtype=torch.float64),
        target=[0, 3],
        step=3,
        insertion_substrate=torch.zeros(1, 1, 4, 4, dtype=torch.float64),
    )
    assert result.deletion_auc.dtype == torch.float64
    assert result.deletion_curve.shape == (2, 7)
    assert torch.all((result.deletion_curve >= 0) & (result.deletion_curve <= 1))


# -------------------------------------------------------- ranking and ties


@pytest.mark.parametrize(
    "attributions",
    [torch.zeros(1, 3, 4), torch.ones(1, 1, 2, 2), torch.full((1, 2, 3, 4), 7.0)],
)
def test_ties_are_broken_in_raster_order(attributions: Tensor) -> None:
    inputs = torch.ones(1, 2, 3, 4)
    result = deletion_insertion(
        Flatten(),
        inputs,
        attributions,
        target=0,
        step=1,
        insertion_substrate=torch.zeros_like(inputs),
        score_func=weighted_pixels,
    )
    # Removing pixel p lowers the score by p + 1: raster order gives 1, 2, ...
    drops = -result.deletion_curve.diff(dim=1)
    torch.testing.assert_close(drops, torch.arange(1.0, 13.0).unsqueeze(0))
    gains = result.insertion_curve.diff(dim=1)
    torch.testing.assert_close(gains, torch.arange(1.0, 13.0).unsqueeze(0))


def test_ranking_follows_decreasing_attribution() -> None:
    perm = torch.tensor([5, 0, 11, 3, 8, 1, 10, 2, 7, 4, 9, 6])
    attributions = torch.empty(12)
    attributions[perm] = torch.arange(12.0, 0.0, -1.0)  # perm[0] is the top pixel
    result = deletion_insertion(
        Flatten(),
        torch.ones(1, 1, 3, 4),
        attributions.view(1, 3, 4),
        target=0,
        step=1,
        insertion_substrate=torch.zeros(1, 1, 3, 4),
        score_func=weighted_pixels,
    )
    drops = -result.deletion_curve.diff(dim=1)
    torch.testing.assert_close(drops, (perm + 1.0).unsqueeze(0))


def test_layer_maps_upsampled_like_captum_interpolate() -> None:
    torch.manual_seed(7)
    layer_map = torch.randn(2, 1, 3, 3)
    inputs = torch.ones(2, 1, 12, 12)
    upsampled = LayerAttribution.interpolate(layer_map, (12, 12), "bilinear")
    kwargs = dict(target=0, step=1, score_func=weighted_pixels)
    kwargs["insertion_substrate"] = torch.zeros_like(inputs)
    from_layer = deletion_insertion(Flatten(), inputs, layer_map, **kwargs)
    from_pixels = deletion_insertion(Flatten(), inputs, upsampled[:, 0], **kwargs)
    # the curves encode the full perturbation order (drop p + 1 per pixel p).
    for a, b in zip(from_layer, from_pixels, strict=True):
        assert torch.equal(a, b)
    expected_order = torch.argsort(
        upsampled.flatten(1), dim=1, descending=True, stable=True
    )
    drops = -from_layer.deletion_curve.diff(dim=1)
    torch.testing.assert_close(drops, expected_order.float() + 1)
    # nearest-neighbour upsampling would give a different order.
    nearest = LayerAttribution.interpolate(layer_map, (12, 12), "nearest")
    other = deletion_insertion(Flatten(), inputs, nearest[:, 0], **kwargs)
    assert not torch.equal(other.deletion_curve, from_layer.deletion_curve)


def test_input_shaped_attributions_are_summed_over_channels(net: nn.Module) -> None:
    torch.manual_seed(8)
    inputs = torch.randn(2, 3, 6, 6)
    attributions = torch.randn(2, 3, 6, 6)
    a = deletion_insertion(net, inputs, attributions, target=1, step=5)
    b = deletion_insertion(net, inputs, attributions.sum(dim=1), target=1, step=5)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (
            {"attributions": torch.randn(3, 1, 2, 2)},
            ValueError,
            "same number of examples",
        ),
        ({"attributions": torch.randn(2, 3, 4, 4)}, ValueError, "do not match inputs"),
        ({"attributions": torch.randn(2, 5, 8)}, ValueError, "N x H x W map"),
        ({"attributions": torch.randn(2, 64)}, ValueError, "do not match inputs"),
        ({"attributions": torch.randn(2, 1, 1, 8, 8)}, ValueError, "do not match"),
        ({"step": 0}, ValueError, "step must be > 0"),
        ({"step": -3}, ValueError, "step must be > 0"),
        ({"step": 2.5}, TypeError, "step must be an int"),
        ({"step": True}, TypeError, "step must be an int"),
        (
            {"max_examples_per_batch": 0},
            ValueError,
            "max_examples_per_batch must be > 0",
        ),
        (
            {"max_examples_per_batch": 1.0},
            TypeError,
            "max_examples_per_batch must be an int",
        ),
        ({"target": 5}, ValueError, r"target 5 is out of range.*5 classes.*0 to 4"),
        ({"target": -1}, ValueError, "target -1 is out of range"),
        ({"target": [0, 9]}, ValueError, "target 9 is out of range"),
        ({"target": torch.tensor([1, 5])}, ValueError, "target 5 is out of range"),
        (
            {"target": [0, 1, 2]},
            ValueError,
            "target has 3 entries but the inputs hold 2 examples",
        ),
        (
            {"target": torch.tensor([0, 1, 2])},
            ValueError,
            "target has 3 entries but the inputs hold 2 examples",
        ),
        ({"target": [1]}, ValueError, "target has 1 entries but the inputs hold 2"),
        ({"target": torch.tensor([[0], [1]])}, ValueError, "0 or 1 dimensions"),
        ({"target": torch.tensor([0.0, 1.0])}, TypeError, "integer tensor"),
        ({"target": (0, 1)}, TypeError, "Tuple targets"),
        ({"inputs": torch.randn(3, 8, 8)}, ValueError, "4-D tensor"),
        ({"inputs": torch.randn(1, 2, 3, 8, 8)}, ValueError, "4-D tensor"),
        (
            {"deletion_substrate": torch.zeros(5, 1, 1)},
            ValueError,
            "does not broadcast",
        ),
        ({"score_func": lambda o, t: o}, ValueError, "one score per image"),
    ],
)
def test_validation_errors(net: nn.Module, kwargs, error, message) -> None:
    args = {
        "inputs": torch.randn(2, 3, 8, 8),
        "attributions": torch.randn(2, 1, 2, 2),
        "target": 0,
    }
    args.update(kwargs)
    with pytest.raises(error, match=message):
        deletion_insertion(net, **args)


def test_non_finite_values_are_rejected(net: nn.Module) -> None:
    inputs = torch.randn(2, 3, 8, 8)
    attributions = torch.randn(2, 3, 8, 8)
    attributions[1, 0, 2, 2] = float("nan")
    with pytest.raises(ValueError, match="attributions contain non-finite"):
        deletion_insertion(net, inputs, attributions)
    attributions[1, 0, 2, 2] = float("inf")
    with pytest.raises(ValueError, match="attributions contain non-finite"):
        deletion_insertion(net, inputs, attributions)
    inputs[0, 1, 0, 0] = float("-inf")
    with pytest.raises(ValueError, match="inputs contain non-finite"):
        deletion_insertion(net, inputs, torch.randn(2, 1, 2, 2))


def test_default_blur_needs_images_of_at_least_6_pixels(net: nn.Module) -> None:
    with pytest.raises(ValueError, match="insertion_substrate"):
        deletion_insertion(net, torch.randn(1, 3, 5, 8), torch.randn(1, 5, 8))


def test_forward_func_must_return_2d(net: nn.Module) -> None:
    with pytest.raises(ValueError, match="2-D tensor B x K"):
        deletion_insertion(
            lambda x: x.sum(dim=(1, 2, 3)),
            torch.randn(2, 3, 8, 8),
            torch.randn(2, 8, 8),
        )
