"""The method registry: every name the command line and the benchmark know comes
from it, and a method registered by a user is found everywhere."""

import pytest
import torch
from captum.attr import LayerAttribution
from models import sequential_net

from captum_shallowcam.cli import build_parser
from captum_shallowcam.experiments.scoring import evaluate
from captum_shallowcam.methods import (
    METHODS,
    OPTIONS,
    MethodSpec,
    make_explainer,
    parse_method,
    register_method,
    unregister_method,
)


class ToyCam(LayerAttribution):
    """Mean activation over channels: the smallest possible layer method."""

    def __init__(self, forward_func, layer, device_ids=None) -> None:
        self.layers = layer if isinstance(layer, list) else [layer]
        super().__init__(forward_func, self.layers[0], device_ids)

    def attribute(self, inputs, target=None, additional_forward_args=None):
        captured = []
        handles = [
            m.register_forward_hook(lambda _m, _i, out: captured.append(out))
            for m in self.layers
        ]
        try:
            with torch.no_grad():
                self.forward_func(inputs)
        finally:
            for handle in handles:
                handle.remove()
        return [a.mean(1, keepdim=True) for a in captured]


@pytest.fixture
def toy_method():
    spec = register_method(MethodSpec("toycam", ToyCam, "mean activation", "nobody"))
    yield spec
    unregister_method("toycam")


def test_the_paper_family_names_are_registered():
    for name in ("gradcam", "layercam", "relevancecam", "shallowcam"):
        assert name in METHODS
        assert METHODS[name].citation and METHODS[name].description


@pytest.mark.parametrize("name", list(METHODS))
def test_every_registered_method_gives_one_map_per_layer(name):
    model = sequential_net()
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([0, 2])
    maps = make_explainer(model, [model[1], model[3]], name)(x, t)
    assert [tuple(m.shape) for m in maps] == [(2, 1, 32, 32), (2, 1, 32, 32)]
    assert all(torch.isfinite(m).all() for m in maps)


@pytest.mark.parametrize("name", list(METHODS))
def test_every_option_a_method_declares_is_accepted(name):
    model = sequential_net()
    for option in METHODS[name].options:
        spec, options = parse_method(f"{name}+{option}")
        assert spec is METHODS[name] and options == [option]
        make_explainer(model, [model[1]], f"{name}+{option}")
    assert set(OPTIONS) >= set(METHODS[name].options)


def test_a_registered_method_reaches_the_cli_help_and_the_benchmark(toy_method):
    for command in ("benchmark", "explain"):
        subparsers = build_parser()._subparsers._group_actions[0].choices
        assert "toycam" in subparsers[command].format_help().replace("\n", " ")
    model = sequential_net()
    x = torch.randn(3, 3, 32, 32)
    result = evaluate(
        model,
        [(["a", "b", "c"], x, torch.tensor([0, 1, 2]))],
        {"conv1": model[0]},
        ["toycam", "layercam"],
        step=16,
    )
    assert set(result.scores) == {"toycam", "layercam"}
    assert len(result.scores["toycam"]["conv1"]["overall"]) == 3


def test_a_taken_name_is_refused_unless_replaced(toy_method):
    with pytest.raises(ValueError, match="registered already; pass replace=True"):
        register_method(MethodSpec("toycam", ToyCam, "again", "nobody"))
    register_method(MethodSpec("toycam", ToyCam, "again", "nobody"), replace=True)
    assert METHODS["toycam"].description == "again"


def test_bad_specs_are_refused():
    with pytest.raises(ValueError, match="no '\\+' but at its end"):
        register_method(MethodSpec("a+b", ToyCam, "", ""))
    with pytest.raises(ValueError, match="unknown options"):
        register_method(MethodSpec("toy2", ToyCam, "", "", options=("sharp",)))
    assert "toy2" not in METHODS


def test_names_ending_in_plus_signs_are_names_not_options():
    spec, options = parse_method("gradcam++")
    assert spec.name == "gradcam++" and options == []
    spec, options = parse_method("gradcam")
    assert spec.name == "gradcam" and options == []
    with pytest.raises(ValueError, match="'gradcam\\+\\+' takes no options"):
        parse_method("gradcam+++sign-aware")


def test_option_messages_list_what_the_method_takes(toy_method):
    model = sequential_net()
    with pytest.raises(ValueError, match=r"'toycam' takes no options"):
        make_explainer(model, [model[0]], "toycam+sign-aware")
    with pytest.raises(
        ValueError,
        match=r"takes only the options \+sign-aware, \+plain-mask and \+both-signs",
    ):
        make_explainer(model, [model[0]], "layercam+sqrt")
