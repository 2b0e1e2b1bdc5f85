"""The sanity checks: model randomization (Adebayo et al., NeurIPS 2018) and
class sensitivity, against the explicit reference of ``_reference.py``."""

import sys
import warnings

import numpy as np
import pytest
import torch
from _reference import (
    assert_close,
    hook_counts,
    model_fingerprint,
    randomization_reference,
    spearman_by_ranks,
)
from models import SmallVgg, SmallVggBN
from torch import Tensor, nn

from captum_shallowcam import LayerCam, LayerShallowCam
from captum_shallowcam.metrics import (
    ModelRandomizationResult,
    class_sensitivity,
    model_randomization,
)

pytest.importorskip("scipy.stats", reason="the sanity checks need scipy")
pytest.importorskip("skimage.metrics", reason="the sanity checks need scikit-image")

#: SmallVgg's modules with parameters, from the output down (named by hand).
TOP_DOWN = ["fc", "features.3", "features.0"]


def layer_cam(model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
    return LayerCam(model, model.features[3]).attribute(x, target=target)


def first_conv_activation(model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
    """A 'map' that reads only the first conv (and ignores the target)."""
    return model.features[:2](x).sum(dim=1, keepdim=True)


@pytest.fixture
def model() -> nn.Module:
    return SmallVgg(bias=True).eval()


@pytest.fixture
def x() -> Tensor:
    return torch.randn(3, 3, 8, 8)


@pytest.mark.parametrize("order", ["cascading", "independent"])
def test_matches_reference(model, x, order):
    target = model(x).argmax(dim=1)
    result = model_randomization(model, layer_cam, x, order=order)
    plain, absolute = randomization_reference(
        model, layer_cam, x, target, TOP_DOWN, cumulative=order == "cascading"
    )
    assert result.modules == TOP_DOWN
    assert_close(result.spearman, plain, rtol=0, atol=1e-12)
    assert_close(result.spearman_abs, absolute, rtol=0, atol=1e-12)
    assert result.ssim.shape == (3, 3)


def test_map_below_the_cascade_correlates_exactly_one_until_reached(model, x):
    result = model_randomization(model, first_conv_activation, x)
    assert result.modules == TOP_DOWN
    # fc, then features.3: the maps are the trained ones (1 up to rounding);
    # then features.0 is randomized.
    for field in (result.spearman, result.spearman_abs, result.ssim):
        assert ((field[:2] - 1).abs() < 1e-12).all()
        assert (field[2] < 0.99).all()


def test_map_that_ignores_the_model_fails_the_check(model, x):
    # An edge detector of the input: what the test is designed to catch.
    def input_edges(m, inputs, target):
        return inputs.diff(dim=-1).abs().sum(dim=1, keepdim=True)

    result = model_randomization(model, input_edges, x)
    assert ((result.spearman - 1).abs() < 1e-12).all()
    assert ((result.ssim - 1).abs() < 1e-12).all()


def test_independent_randomizes_one_module_at_a_time(model, x):
    independent = model_randomization(
        model, first_conv_activation, x, order="independent"
    )
    assert ((independent.spearman[:2] - 1).abs() < 1e-12).all()
    assert (independent.spearman[2] < 0.99).all()
    # Module k gets the same random weights in both orders, so the first steps
    # agree and the later ones differ (cumulative vs one module).
    cascading = model_randomization(model, layer_cam, x)
    independent = model_randomization(model, layer_cam, x, order="independent")
    assert torch.equal(cascading.spearman[0], independent.spearman[0])
    assert not torch.equal(cascading.spearman[1:], independent.spearman[1:])


def test_same_seed_same_result_other_seed_other_result(model, x):
    first = model_randomization(model, layer_cam, x, seed=3)
    again = model_randomization(model, layer_cam, x, seed=3)
    other = model_randomization(model, layer_cam, x, seed=4)
    for field in ("spearman", "spearman_abs", "ssim"):
        assert torch.equal(getattr(first, field), getattr(again, field))
    assert not torch.equal(first.spearman, other.spearman)


def test_model_and_random_state_unchanged():
    model = SmallVggBN().train()
    before = model_fingerprint(model)
    hooks = hook_counts(model)
    x = torch.randn(4, 3, 8, 8)
    rng = torch.get_rng_state()
    model_randomization(model, layer_cam, x, show_progress=True)
    after = model_fingerprint(model)
    assert after["training"] == before["training"]
    assert after["requires_grad"] == before["requires_grad"]
    assert before["state"].keys() == after["state"].keys()
    assert all(
        torch.equal(before["state"][k], after["state"][k]) for k in after["state"]
    )
    assert hook_counts(model) == hooks
    assert torch.equal(torch.get_rng_state(), rng)


def test_batchnorm_is_randomized_with_its_statistics():
    model = SmallVggBN().eval()
    with torch.no_grad():
        bn = model.features[1]
        bn.running_mean.uniform_(1, 2)
        bn.running_var.uniform_(2, 3)
    seen = []

    def explain(m, inputs, target):
        bn = m.features[1]
        seen.append((bn.running_mean.clone(), bn.running_var.clone(), bn.weight))
        return layer_cam(m, inputs, target)

    result = model_randomization(model, explain, torch.randn(2, 3, 8, 8))
    assert result.modules == [
        "fc", "features.5", "features.4", "features.1", "features.0"
    ]  # fmt: skip
    # seen[0]: the trained copy; seen[k + 1]: after step k (features.1 is k = 3).
    assert (seen[3][0] >= 1).all() and (seen[3][1] >= 2).all()
    for mean, var, weight in seen[4:]:
        assert (mean == 0).all() and (var == 1).all() and (weight == 1).all()


def test_target_is_fixed_at_the_trained_prediction(model, x):
    seen = []

    def explain(m, inputs, target):
        seen.append(target.clone())
        return layer_cam(m, inputs, target)

    model_randomization(model, explain, x)
    assert all(torch.equal(t, model(x).argmax(dim=1)) for t in seen)
    assert len(seen) == 1 + len(TOP_DOWN)
    seen.clear()
    model_randomization(model, explain, x, target=2)
    assert all((t == 2).all() for t in seen)


def test_modules_groups_are_one_step_each(model, x):
    result = model_randomization(
        model, first_conv_activation, x, modules=["fc", ["features"]]
    )
    assert result.modules == ["fc", "features"]
    assert ((result.spearman[0] - 1).abs() < 1e-12).all()
    assert (result.spearman[1] < 0.99).all()
    grouped = model_randomization(
        model, layer_cam, x, modules=[["fc", "features.3", "features.0"]]
    )
    assert grouped.modules == ["fc+features.3+features.0"]


def test_unknown_module_name_is_refused(model, x):
    with pytest.raises(ValueError, match="not a submodule"):
        model_randomization(model, layer_cam, x, modules=["features.9"])
    with pytest.raises(ValueError, match="nothing"):
        model_randomization(model, layer_cam, x, modules=["features.1"])
    with pytest.raises(TypeError, match=r"modules=\['fc'\]"):
        model_randomization(model, layer_cam, x, modules="fc")


def test_list_of_maps_gives_a_list_of_results(model, x):
    def two_layers(m, inputs, target):
        return LayerCam(m, [m.features[0], m.features[3]]).attribute(
            inputs, target=target
        )

    both = model_randomization(model, two_layers, x)
    last = model_randomization(model, layer_cam, x)
    assert isinstance(both, list) and len(both) == 2
    assert torch.equal(both[1].spearman, last.spearman)


@pytest.mark.parametrize("method", [LayerCam, LayerShallowCam])
def test_runs_with_the_cam_methods(model, x, method):
    def explain(m, inputs, target):
        return method(m, m.features[3]).attribute(inputs, target=target)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a random net may give 0
        result = model_randomization(model, explain, x)
    assert isinstance(result, ModelRandomizationResult)
    for field in (result.spearman, result.spearman_abs, result.ssim):
        assert field.shape == (3, 3) and field.dtype == torch.float64
        values = field[~field.isnan()]
        assert ((values >= -1 - 1e-9) & (values <= 1 + 1e-9)).all()


def test_constant_map_gives_nan_with_a_warning(model, x):
    def constant_after_randomizing(m, inputs, target):
        maps = first_conv_activation(m, inputs, target)
        trained = torch.equal(m.fc.weight, model.fc.weight)
        return maps if trained else torch.zeros_like(maps)

    with pytest.warns(RuntimeWarning, match="9 comparison") as record:  # 3 x 3
        result = model_randomization(model, constant_after_randomizing, x)
    assert result.spearman.isnan().all() and result.ssim.isnan().all()
    assert record[0].filename == __file__  # the warning points at the call


def test_maps_too_small_for_ssim_give_nan_with_a_warning(model, x):
    def two_by_two(m, inputs, target):
        return nn.functional.adaptive_avg_pool2d(layer_cam(m, inputs, target), 2)

    with pytest.warns(RuntimeWarning, match="3 x 3"):
        result = model_randomization(model, two_by_two, x)
    assert result.ssim.isnan().all()


# ------------------------------------------------------------------ bad inputs
class NoParameters(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=(2, 3))


def _per_channel(m, inputs, target):
    return LayerCam(m, m.features[3]).attribute(
        inputs, target=target, attr_dim_summation=False
    )


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"explain": _per_channel}, ValueError, r"N x 1 x h x w"),
        ({"explain": lambda m, x, t: layer_cam(m, x, t)[:2]}, ValueError, "N = 3"),
        ({"explain": lambda m, x, t: layer_cam(m, x, t)[:, 0]}, ValueError, "1 x h"),
        ({"explain": lambda m, x, t: None}, ValueError, "NoneType"),
        ({"target": 5}, ValueError, "out of range"),
        ({"order": "random"}, ValueError, "Unknown order 'random'"),
    ],
)
def test_bad_input_is_refused_and_model_unchanged(model, x, kwargs, error, message):
    before = model_fingerprint(model)
    kwargs = {"explain": layer_cam, **kwargs}
    with pytest.raises(error, match=message):
        model_randomization(model, inputs=x, **kwargs)
    after = model_fingerprint(model)
    assert all(
        torch.equal(before["state"][k], after["state"][k]) for k in after["state"]
    )
    assert hook_counts(model) == hook_counts(SmallVgg(bias=True))


def test_maps_that_change_shape_between_steps_are_refused(model, x):
    def shape_changes(m, inputs, target):
        maps = layer_cam(m, inputs, target)
        trained = torch.equal(m.fc.weight, model.fc.weight)
        return maps if trained else maps[..., :-1]

    with pytest.raises(ValueError, match="at step 'fc'.*same layers"):
        model_randomization(model, shape_changes, x)


def test_model_without_parameters_is_refused(x):
    with pytest.raises(ValueError, match="no parameters"):
        model_randomization(NoParameters(), first_conv_activation, x)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        model_randomization(lambda t: t.mean(dim=(2, 3)), first_conv_activation, x)


def test_model_without_resettable_modules_is_refused(x):
    class OwnParameter(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(3))

        def forward(self, x: Tensor) -> Tensor:
            return x.mean(dim=(2, 3)) * self.scale

    with pytest.warns(RuntimeWarning, match="no reset_parameters") as record:
        with pytest.raises(ValueError, match="nothing to randomize"):
            model_randomization(OwnParameter(), lambda m, x, t: x[:, :1], x)
    assert record[0].filename == __file__


def test_missing_dependency_names_the_extra(model, x, monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage.metrics", None)
    with pytest.raises(ImportError, match=r"pip install 'captum-shallowcam\[sanity\]'"):
        model_randomization(model, layer_cam, x)


# ------------------------------------------------------------------ class sensitivity
class ChannelMeans(nn.Module):
    """Class c's score is the mean of input channel c."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(x).flatten(1)


def input_channel(model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
    """The map of class c is input channel c."""
    return x[torch.arange(x.shape[0]), target].unsqueeze(1)


def test_class_sensitivity_compares_top_with_second_or_last_class():
    ramp = torch.arange(16.0).reshape(1, 4, 4)
    # Means: channel 2 highest, channel 0 second, channel 1 lowest. Channel 0
    # ranks pixels as channel 2 does, channel 1 in reverse.
    x = torch.stack([torch.cat([ramp, -ramp, ramp + 10])])
    second = class_sensitivity(ChannelMeans(), input_channel, x)
    last = class_sensitivity(ChannelMeans(), input_channel, x, other="last")
    assert torch.equal(second, torch.tensor([1.0], dtype=torch.float64))
    assert torch.equal(last, torch.tensor([-1.0], dtype=torch.float64))


def test_class_sensitivity_with_layer_cam_is_the_rank_correlation_of_the_maps():
    # A 1x1 conv copies input channels 0 and 1; the linear layer scores class 0
    # by channel 0's mean, class 1 by channel 1's and class 2 by half of each.
    # LayerCAM of class c at the conv is then ReLU of the channels it reads.
    conv = nn.Conv2d(3, 2, 1, bias=False)
    fc = nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(2, 3).reshape(2, 3, 1, 1))
        fc.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]))
    model = nn.Sequential(conv, nn.AdaptiveAvgPool2d(1), nn.Flatten(), fc).eval()
    x = torch.randn(1, 3, 5, 5)
    x[:, 0] += 5  # class 0 first, class 2 second, class 1 last
    x[:, 1] -= 1

    def explain(m, inputs, target):
        return LayerCam(m, m[0]).attribute(inputs, target=target)

    second = class_sensitivity(model, explain, x)
    expected = spearman_by_ranks(x[0, 0].relu(), (x[0, 0] + x[0, 1]).relu())
    assert abs(float(second[0]) - expected) < 1e-12
    last = class_sensitivity(model, explain, x, other="last")
    expected = spearman_by_ranks(x[0, 0].relu(), x[0, 1].relu())
    assert abs(float(last[0]) - expected) < 1e-12


def test_class_sensitivity_of_a_list_of_maps_is_a_list():
    x = torch.randn(2, 3, 4, 4)

    def two_maps(m, inputs, target):
        return [input_channel(m, inputs, target), -input_channel(m, inputs, target)]

    first, negated = class_sensitivity(ChannelMeans(), two_maps, x)
    assert torch.allclose(first, negated, rtol=0, atol=1e-12)
    assert torch.allclose(first, class_sensitivity(ChannelMeans(), input_channel, x))


def test_class_sensitivity_bad_inputs():
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match="Unknown other 'first'"):
        class_sensitivity(ChannelMeans(), input_channel, x, other="first")
    with pytest.raises(ValueError, match="N x 1 x h x w"):
        class_sensitivity(ChannelMeans(), lambda m, x, t: x, x)
    with pytest.raises(ValueError, match="at least 2"):
        class_sensitivity(ChannelMeans(), input_channel, x[:, :1])


def test_class_sensitivity_constant_map_is_nan_with_a_warning():
    x = torch.randn(2, 3, 4, 4)
    with pytest.warns(RuntimeWarning, match="constant map"):
        values = class_sensitivity(
            ChannelMeans(), lambda m, x, t: torch.ones(2, 1, 4, 4), x
        )
    assert np.isnan(values.numpy()).all()
