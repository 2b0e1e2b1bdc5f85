"""A new method, model, rule preset or metric is one registry line: the command
line, the benchmark and the loaders find it without any other edit."""

import pytest
import torch
from torch import nn

from captum_shallowcam import LayerCam
from captum_shallowcam.attr.presets import (
    RulePreset,
    register_rule_preset,
    unregister_rule_preset,
)
from captum_shallowcam.cli import build_parser
from captum_shallowcam.experiments.scoring import evaluate
from captum_shallowcam.methods import (
    MethodSpec,
    make_explainer,
    method_names,
    register_method,
    unregister_method,
)
from captum_shallowcam.models import (
    LoadedModel,
    ModelSpec,
    Unnormalize,
    available_models,
    default_layer_names,
    load_model,
    register_model,
    unregister_model,
)


class _ToyCam(LayerCam):
    """A toy method: LayerCam under another name (the one file a method is)."""


def _toy_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5),
    ).eval()  # fmt: skip


def _load_toy(spec, pretrained, normalization):
    model = _toy_net()
    return LoadedModel(
        spec.name, model, lambda image: torch.zeros(3, 8, 8),
        Unnormalize(spec.mean, spec.std), {"conv": model[1]}, None,
    )  # fmt: skip


@pytest.fixture
def toy_method():
    register_method(MethodSpec("toycam", _ToyCam, "a toy", "Nobody, 2026"))
    yield "toycam"
    unregister_method("toycam")


@pytest.fixture
def toy_model():
    register_model(ModelSpec("toy-net", _load_toy, ("conv",), aliases=("toynet",)))
    yield "toy-net"
    unregister_model("toy-net")


def _help(capsys, argv):
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)
    return " ".join(capsys.readouterr().out.split())


def test_a_registered_method_is_in_the_help_and_the_benchmark(toy_method, capsys):
    assert toy_method in method_names()
    assert toy_method in _help(capsys, ["benchmark", "--help"])
    assert toy_method in _help(capsys, ["explain", "--help"])
    model = _toy_net()
    inputs = torch.rand(2, 3, 8, 8)
    batches = [(["a", "b"], inputs, torch.tensor([0, 1]))]
    result = evaluate(model, batches, {"conv": model[1]}, [toy_method], step=32)
    assert list(result.scores) == [toy_method]
    assert len(result.scores[toy_method]["conv"]["overall"]) == 2
    maps = make_explainer(model, [model[1]], toy_method)(inputs, torch.tensor([0, 1]))
    assert maps[0].shape == (2, 1, 8, 8)


def test_a_registered_method_is_run_by_the_cross_cutting_suites(toy_method):
    # Each suite builds its parametrization with method_cases() at collection
    # time; built again now, it holds the toy method: a new method is tested by
    # every suite without editing any.
    import test_bad_inputs
    import test_concurrency
    import test_exact_or_refused
    import test_properties

    for suite in (test_concurrency, test_exact_or_refused, test_properties):
        assert toy_method in suite.method_cases(), suite.__name__
    assert toy_method not in test_exact_or_refused.relevance_method_cases()
    rows = test_bad_inputs.method_cases()
    assert f"{toy_method}: layer not in the model" in rows
    assert f"{toy_method}: NaN in the input" in rows


def test_a_registered_model_is_loaded_and_offered_by_the_cli(toy_model, capsys):
    assert toy_model in available_models()
    assert default_layer_names("ToyNet") == ["conv"]
    loaded = load_model("toynet")
    assert loaded.name == toy_model and list(loaded.layers) == ["conv"]
    assert toy_model in _help(capsys, ["benchmark", "--help"])
    args = build_parser().parse_args(["explain", "x.jpg", "--model", toy_model])
    assert args.model == toy_model


def test_a_registered_rule_preset_is_a_choice_of_the_cli(capsys):
    register_rule_preset(RulePreset("toy-rules", lambda: None, "the defaults again"))
    try:
        assert "toy-rules: the defaults again" in _help(capsys, ["benchmark", "--help"])
        args = build_parser().parse_args(
            ["benchmark", "--images", "x", "--rules", "toy-rules"]
        )
        assert args.rules == "toy-rules"
    finally:
        unregister_rule_preset("toy-rules")


def test_a_rule_preset_reaches_the_relevance_methods_only():
    from captum_shallowcam.attr.presets import rule_preset

    model = _toy_net()
    inputs = torch.rand(2, 3, 8, 8)
    targets = torch.tensor([0, 1])
    layers = [model[1]]
    for method in ("layercam", "gradcam"):  # no relevance: the preset is ignored
        torch.testing.assert_close(
            make_explainer(model, layers, method, "epsilon")(inputs, targets),
            make_explainer(model, layers, method)(inputs, targets),
        )
    from captum_shallowcam import LayerShallowCam

    expected = LayerShallowCam(model, layers, rules=rule_preset("epsilon")).attribute(
        inputs, target=targets
    )
    got = make_explainer(model, layers, "shallowcam", "epsilon")(inputs, targets)
    torch.testing.assert_close(got, [e.detach() for e in expected])
    with pytest.raises(ValueError, match="drop the rule preset or the"):
        make_explainer(model, layers, "shallowcam+no-conserve", "epsilon")
