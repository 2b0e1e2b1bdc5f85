"""Models an adversarial user writes: each is explained exactly or refused clearly.

One test per defect found by breaking the package on purpose (issue 14):
in-place statements, compiled and scripted models, rules for whole modules,
sum-pool heads, non-finite values inside the model, shared BatchNorm
backbones, train-mode models, ``torch.inference_mode`` and nested calls.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from method_cases import explainer, registered
from models import BnResidualMeanNet, bn_residual_mean_net
from torch import Tensor, nn

from captum_shallowcam import LayerCam, LayerShallowCam
from captum_shallowcam.attr._engine import _Engine
from captum_shallowcam.attr.rules import validate_rules
from captum_shallowcam.methods import METHODS as REGISTRY
from captum_shallowcam.metrics import deletion_insertion
from captum_shallowcam.rules import EpsilonRule, IdentityRule


def method_cases() -> list[str]:
    """Every registered method: each defect here is one any method could have."""
    return registered()


def relevance_method_cases() -> list[str]:
    """The relevance methods: only they take ``rules=`` (and so suggest one)."""
    return registered(relevance=True)


METHODS = method_cases()
RELEVANCE_METHODS = relevance_method_cases()
TIMEOUT = 60.0


def images(n: int = 2, size: int = 8, seed: int = 1) -> Tensor:
    torch.manual_seed(seed)
    return torch.randn(n, 3, size, size)


def explain(name: str, model: Callable, layers, x: Tensor, **kwargs) -> list[Tensor]:
    """Maps (and, for the relevance methods, deltas) as one list of tensors."""
    method = explainer(name, model, layers, **kwargs.pop("init", {}))
    if not REGISTRY[name].relevance:
        return list(method.attribute(x, target=[1, 3]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # conservation is not what these pin
        maps, deltas = method.attribute(
            x, target=[1, 3], return_convergence_delta=True, initial_relevance="target"
        )
    return list(maps) + list(deltas)


def assert_all_close(got: list[Tensor], want: list[Tensor], tol: float = 1e-6) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        scale = float(w.abs().max()) + 1e-12
        assert float((g - w).abs().max()) <= tol * scale, float((g - w).abs().max())


# ------------------------------------------------------------ 1. in-place ReLU
class InPlaceNet(nn.Module):
    """The same function written with out-of-place and in-place statements."""

    def __init__(self, style: str) -> None:
        super().__init__()
        self.style = style
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
        self.fc = nn.Linear(6, 5)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(x)
        if self.style == "out_of_place":
            h = torch.relu(h)
        elif self.style == "method":
            h.relu_()  # the result is ignored: h itself changes
        else:
            F.relu(h, inplace=True)
        g = self.conv2(h)
        if self.style == "out_of_place":
            g = g + h
        else:
            g.add_(h)
        g = torch.relu(g)
        return self.fc(g.mean((2, 3)))


def in_place_net(style: str) -> InPlaceNet:
    torch.manual_seed(0)
    return InPlaceNet(style).eval()


@pytest.mark.parametrize("style", ["method", "functional"])
@pytest.mark.parametrize("method", METHODS)
def test_in_place_statements_are_explained_as_written(method: str, style: str) -> None:
    reference, model = in_place_net("out_of_place"), in_place_net(style)
    x = images()
    want = explain(method, reference, [reference.conv1, reference.conv2], x)
    got = explain(method, model, [model.conv1, model.conv2], x)
    assert_all_close(got, want)


def engine_passes(model: nn.Module, layer: nn.Module, rules=None) -> list[Tensor]:
    """The gradient and the relevance (one-hot on class 1) at ``layer``, from
    the engine itself."""
    engine = _Engine(model, [layer], validate_rules(rules), False, use_relevance=True)
    with engine.hooked(), torch.enable_grad():
        output = engine.forward(images(), None)
        initial = F.one_hot(torch.tensor([1, 1]), output.shape[1]).to(output.dtype)
        relevances = engine.relevance(
            output, initial, engine.captures, retain_graph=True
        )
        gradients = engine.gradients(output[:, 1], retain_graph=False)
    return gradients + relevances


def test_in_place_statement_gives_the_true_gradient_and_relevance() -> None:
    reference, model = in_place_net("out_of_place"), in_place_net("method")
    assert_all_close(
        engine_passes(model, model.conv1), engine_passes(reference, reference.conv1)
    )


# ------------------------------------------------------------ 2. torch.compile
@pytest.mark.parametrize("method", METHODS)
def test_compiled_model_is_explained_as_the_original(method: str) -> None:
    model = bn_residual_mean_net()
    x = images()
    want = explain(method, model, [model.conv1, model.conv2], x)
    compiled = torch.compile(model, backend="eager")
    compiled(x)  # compiled once, as a user's model would be
    got = explain(method, compiled, [model.conv1, model.conv2], x)
    assert_all_close(got, want)


def test_model_with_a_compiled_submodule_is_explained_as_the_original() -> None:
    model = bn_residual_mean_net()
    x = images()
    want = explain("shallowcam", model, [model.conv2], x)

    class Wrapper(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = torch.compile(inner, backend="eager")

        def forward(self, x: Tensor) -> Tensor:
            return self.inner(x)

    got = explain("shallowcam", Wrapper(model), [model.conv2], x)
    assert_all_close(got, want)


# ------------------------------------------------------ 3. whole-module rules
class LinearLeaf(nn.Module):
    """A leaf module of a type the engine does not know: a 1x1 conv by einsum."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(channels, channels) / channels**0.5)
        self.bias = nn.Parameter(torch.randn(channels))

    def forward(self, x: Tensor) -> Tensor:
        return torch.einsum("oc,nchw->nohw", self.weight, x) + self.bias[:, None, None]


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(6, 6, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.conv(x))


class RuleNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.leaf = LinearLeaf(6)
        self.block = Block()
        self.fc = nn.Linear(6, 5)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.conv1(x))
        h = self.block(torch.relu(self.leaf(h)))
        return self.fc(h.mean((2, 3)))


def rule_net() -> RuleNet:
    torch.manual_seed(0)
    return RuleNet().eval()


def relevance_at(model: nn.Module, layer: nn.Module, rules) -> Tensor:
    return engine_passes(model, layer, rules)[1]


def test_a_rule_for_an_unknown_leaf_module_is_applied_with_its_epsilon() -> None:
    model = rule_net()
    small = relevance_at(model, model.conv1, {LinearLeaf: EpsilonRule(1e-9)})
    large = relevance_at(model, model.conv1, {LinearLeaf: EpsilonRule(1e3)})
    assert not torch.allclose(small, large)
    # The epsilon rule absorbs relevance: with a huge epsilon almost none is left.
    assert float(large.abs().sum()) < 1e-2 * float(small.abs().sum())


def test_a_rule_for_an_unknown_leaf_module_equals_explicit_epsilon() -> None:
    model = rule_net()
    epsilon = 0.5
    rules = {LinearLeaf: EpsilonRule(epsilon)}
    relevance_out = relevance_at(model, model.leaf, rules)
    # conv1 -> ReLU -> leaf: the ReLU passes relevance unchanged, so the
    # relevance at conv1 is the epsilon rule's at the leaf's input.
    got = relevance_at(model, model.conv1, rules)
    with torch.no_grad():
        x = torch.relu(model.conv1(images()))
        z = model.leaf(x)
        ratio = relevance_out / (z + epsilon * torch.where(z >= 0, 1.0, -1.0))
        explicit = x * torch.einsum("oc,nohw->nchw", model.leaf.weight, ratio)
    assert torch.allclose(got, explicit, atol=1e-6, rtol=1e-4)


def test_a_rule_for_a_block_applies_to_the_operations_inside() -> None:
    model = rule_net()
    by_block = relevance_at(model, model.conv1, {Block: EpsilonRule(1e2)})
    by_conv = relevance_at(model, model.conv1, {model.block.conv: EpsilonRule(1e2)})
    default = relevance_at(model, model.conv1, None)
    assert torch.allclose(by_block, by_conv)
    assert not torch.allclose(by_block, default)


def test_a_rule_for_an_operation_beats_the_rule_for_its_block() -> None:
    model = rule_net()
    both = relevance_at(
        model, model.conv1, {Block: EpsilonRule(1e2), nn.Conv2d: EpsilonRule(1e-9)}
    )
    conv_only = relevance_at(model, model.conv1, {nn.Conv2d: EpsilonRule(1e-9)})
    assert torch.allclose(both, conv_only)


# ------------------------------------------------------------ 4. detached maps
class SumPoolNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
        self.fc = nn.Linear(6, 5)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(h.sum((2, 3)))  # a sum-pool head


@pytest.mark.parametrize("method", METHODS)
def test_maps_are_detached_when_the_layer_feeds_a_sum(method: str) -> None:
    torch.manual_seed(0)
    model = SumPoolNet().eval()
    for result in explain(method, model, [model.conv1, model.conv2], images()):
        assert not result.requires_grad and result.grad_fn is None
        result.numpy()


# ------------------------------------------------- 5. NaN or inf in the model
class Overflow(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.fc = nn.Linear(6, 5)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.conv(x)) * 1e30
        return self.fc((h * h).mean((2, 3)))  # overflows float32


def nan_weight_net() -> BnResidualMeanNet:
    model = bn_residual_mean_net()
    with torch.no_grad():
        model.conv2.weight[0, 0, 0, 0] = float("nan")
    return model


@pytest.mark.parametrize("make", [nan_weight_net, lambda: Overflow().eval()])
@pytest.mark.parametrize("method", METHODS)
def test_non_finite_values_inside_the_model_raise(method: str, make) -> None:
    torch.manual_seed(0)
    model = make()
    layer = model.conv1 if hasattr(model, "conv1") else model.conv
    with pytest.raises(ValueError, match="NaN or inf"):
        explainer(method, model, layer).attribute(images(), target=1)


# ----------------------------------------- 6. a BatchNorm shared by two models
class Gate(nn.Module):
    """Identity; signals ``entered`` and waits for ``release`` in one thread."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()
        self.wait_thread = ""

    def forward(self, x: Tensor) -> Tensor:
        if threading.current_thread().name == self.wait_thread:
            self.entered.set()
            assert self.release.wait(TIMEOUT)
        return x


class Backbone(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.gate = Gate()

    def forward(self, x: Tensor) -> Tensor:
        return self.gate(torch.relu(self.bn(self.conv(x))))


class Head(nn.Module):
    def __init__(self, backbone: Backbone, classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.fc = nn.Linear(6, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.backbone(x).mean((2, 3)))


@pytest.mark.parametrize("method", METHODS)
def test_two_models_sharing_a_batchnorm_are_not_explained_at_once(method: str) -> None:
    torch.manual_seed(0)
    backbone = Backbone()
    first, second = Head(backbone, 5).train(), Head(backbone, 4).train()
    saved = {k: v.clone() for k, v in backbone.state_dict().items()}
    rules = (
        {"init": {"rules": {Gate: IdentityRule()}}}
        if REGISTRY[method].relevance
        else {}
    )
    errors: list = []

    def run_first() -> None:
        try:
            explain(method, first, backbone.conv, images(seed=2), **dict(rules))
        except BaseException as error:  # noqa: BLE001 - checked below
            errors.append(error)

    backbone.gate.wait_thread = "first"
    worker = threading.Thread(target=run_first, name="first", daemon=True)
    worker.start()
    try:
        assert backbone.gate.entered.wait(TIMEOUT)
        with pytest.raises(RuntimeError, match="another thread"):
            explain(method, second, backbone.conv, images(seed=3), **dict(rules))
    finally:
        backbone.gate.release.set()
        worker.join(TIMEOUT)
    assert not errors
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, saved[key]), key


# ------------------------------------------- 7. train-mode BatchNorm statistics
def test_deletion_insertion_leaves_train_mode_batchnorm_statistics_unchanged() -> None:
    model = bn_residual_mean_net().train()
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    x = images(size=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        deletion_insertion(model, x, torch.rand(2, 1, 4, 4), target=[1, 2], step=64)
    for key, value in model.state_dict().items():
        assert torch.equal(value, saved[key]), key


def test_layer_cam_with_a_function_leaves_batchnorm_statistics_unchanged() -> None:
    model = bn_residual_mean_net().train()
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    LayerCam(lambda x: model(x), model.conv2).attribute(images(), target=1)
    for key, value in model.state_dict().items():
        assert torch.equal(value, saved[key]), key


# -------------------------------------------------------- 8. inference_mode
@pytest.mark.parametrize("method", METHODS)
def test_inference_mode_works_as_no_grad(method: str) -> None:
    model = bn_residual_mean_net()
    want = explain(method, model, [model.conv1, model.conv2], images())
    with torch.inference_mode():
        x = images()
        got = explain(method, model, [model.conv1, model.conv2], x)
    assert_all_close(got, want)


# ------------------------------------------------------------ 9. clear errors
@pytest.mark.parametrize("method", METHODS)
def test_nested_explanation_of_the_same_model_is_refused(method: str) -> None:
    model = bn_residual_mean_net()
    inner = explainer(method, model, model.conv2)

    class Outer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: Tensor) -> Tensor:
            inner.attribute(x.detach(), target=1)
            return self.model(x)

    outer = Outer()
    with pytest.raises(RuntimeError, match="already being explained in this thread"):
        explainer(method, outer, model.conv2).attribute(images(), target=1)
    # and the model is usable afterwards (conv2 is inside a residual branch,
    # where conservation is not expected)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        inner.attribute(images(), target=1)


@pytest.mark.parametrize(
    "module", [nn.ConvTranspose2d(6, 6, 2, stride=2), nn.MaxUnpool2d(2)]
)
@pytest.mark.parametrize("method", RELEVANCE_METHODS)
def test_the_suggested_rule_for_a_resizing_module_works(method: str, module) -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 6, 3, padding=1)
            self.pool = nn.MaxPool2d(2, return_indices=True)
            self.up = module
            self.fc = nn.Linear(6, 5)

        def forward(self, x: Tensor) -> Tensor:
            h, indices = self.pool(torch.relu(self.conv(x)))
            h = (
                self.up(h, indices)
                if isinstance(self.up, nn.MaxUnpool2d)
                else self.up(h)
            )
            return self.fc(h.mean((2, 3)))

    torch.manual_seed(0)
    model = Net().eval()
    with pytest.raises(TypeError) as info:
        explainer(method, model, model.conv).attribute(images(), target=1)
    message = str(info.value)
    kind = type(module).__name__
    assert f"rules={{{kind}: EpsilonRule()}}" in message
    assert "IdentityRule" not in message
    # The epsilon rule drops the bias's share, so conservation is not checked.
    maps = explainer(
        method, model, model.conv, rules={type(module): EpsilonRule()}
    ).attribute(images(), target=1, check_conservation=False)
    assert torch.isfinite(maps).all()


def test_the_no_rule_error_suggests_identity_only_for_element_wise_modules() -> None:
    class Square(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return x * x

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 6, 3, padding=1)
            self.square = Square()
            self.up = nn.ConvTranspose2d(6, 6, 2, stride=2)
            self.fc = nn.Linear(6, 5)

        def forward(self, x: Tensor) -> Tensor:
            h = self.up(self.square(self.conv(x)))
            return self.fc(h.mean((2, 3)))

    model = Net().eval()
    with pytest.raises(TypeError) as info:
        LayerShallowCam(model, model.conv).attribute(images(), target=1)
    assert "rules={Square: IdentityRule(), ConvTranspose2d: EpsilonRule()}" in str(
        info.value
    )


def test_scripted_model_is_refused_with_a_message() -> None:
    model = bn_residual_mean_net()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated
        scripted = torch.jit.script(model)
    for method in METHODS:
        with pytest.raises(TypeError, match="TorchScript"):
            explainer(method, scripted, model.conv1)
        with pytest.raises(TypeError, match="TorchScript"):
            explainer(method, scripted, scripted.conv1)


@pytest.mark.parametrize("method", METHODS)
def test_target_beyond_int64_is_a_value_error(method: str) -> None:
    model = bn_residual_mean_net()
    with pytest.raises(ValueError, match="out of range"):
        explainer(method, model, model.conv1).attribute(images(), target=2**70)
    with pytest.raises(ValueError, match="out of range"):
        explainer(method, model, model.conv1).attribute(images(), target=[0, -(2**70)])


def test_metric_integers_beyond_int64_are_value_errors() -> None:
    model = bn_residual_mean_net()
    kwargs: dict = dict(inputs=images(size=16), attributions=torch.rand(2, 1, 4, 4))
    with pytest.raises(ValueError, match="out of range"):
        deletion_insertion(model, target=2**70, **kwargs)
    with pytest.raises(ValueError, match="step"):
        deletion_insertion(model, step=2**70, **kwargs)
    with pytest.raises(ValueError, match="max_examples_per_batch"):
        deletion_insertion(model, max_examples_per_batch=2**70, **kwargs)


@pytest.mark.parametrize("wrap", [lambda out: {"logits": out}, lambda out: (out, out)])
def test_metric_forward_func_returning_a_container_is_a_clear_error(wrap) -> None:
    model = bn_residual_mean_net()
    with pytest.raises(ValueError, match="forward_func must return a 2-D tensor"):
        deletion_insertion(
            lambda x: wrap(model(x)), images(size=16), torch.rand(2, 1, 4, 4), step=64
        )
