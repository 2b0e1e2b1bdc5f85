"""Bad inputs to the three methods and the metric, and what each gets.

``ROWS`` is the table of ``docs/robustness.rst``: every row is tested here,
and :func:`test_docs_table_matches_rows` checks that the docs show exactly
these rows, so the page stays true. :func:`registry_rows` runs the method rows
for every registered method too (by its registry name), so a new method gets
the same errors without editing this file. Print the table in reStructuredText with
``python tests/test_bad_inputs.py``.
"""

import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.utils.checkpoint
from captum.testing.helpers.basic_models import BasicModel_ConvNet
from method_cases import explainer, registered
from torch import Tensor, nn

from captum_shallowcam import LayerCam, LayerRelevanceCam, LayerShallowCam
from captum_shallowcam.metrics import RiseBlur, deletion_insertion
from captum_shallowcam.rules import EpsilonRule, GammaRule, IdentityRule

DOCS = Path(__file__).resolve().parents[1] / "docs" / "robustness.rst"
METHODS = ("LayerCam", "LayerRelevanceCam", "LayerShallowCam")
RELEVANCE_METHODS = ("LayerRelevanceCam", "LayerShallowCam")
CLASSES = {"LayerCam": LayerCam, "LayerRelevanceCam": LayerRelevanceCam}
CLASSES["LayerShallowCam"] = LayerShallowCam


# ---------------------------------------------------------------------- models
class Net(nn.Module):
    """Five classes; ``act`` is one ReLU used twice; ``unused`` is never called."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.act = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.unused = nn.Conv2d(4, 4, 1)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 5)

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(self.bn(self.conv1(x)))
        x = self.act(self.conv2(x))
        return self.fc(torch.flatten(self.gap(x), 1))


class ThreeDOutput(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)[:, None, :]


def net() -> Net:
    torch.manual_seed(0)
    return Net().eval()


def images(n: int = 2, size: int = 8) -> Tensor:
    torch.manual_seed(1)
    return torch.randn(n, 3, size, size)


def with_value(x: Tensor, value: float) -> Tensor:
    x = x.clone()
    x.view(-1)[x.numel() // 2 + 3] = value  # one entry of the second example
    return x


# --------------------------------------------------------------- the call makers
Construct = Callable[[], Any]
Call = Callable[[Any], Any]


def construct_method(api: str, model: Any, layer: Any, **kwargs: Any) -> Any:
    """The method ``api`` (a class of the docs table, or a registered name)."""
    if api in CLASSES:
        return CLASSES[api](model, layer, **kwargs)
    return explainer(api, model, layer, **kwargs)


def method_case(
    build: Callable[[str], tuple[nn.Module, Any, dict[str, Any]]],
    inputs: Callable[[], Any] = images,
    **attribute_kwargs: Any,
) -> Callable[[str], tuple[Construct, Call]]:
    """A bad call of a method: ``build(api)`` gives (forward_func, layer,
    constructor kwargs); ``attribute`` gets ``inputs()`` and the kwargs."""

    def make(api: str) -> tuple[Construct, Call]:
        def construct():
            model, layer, kwargs = build(api)
            return construct_method(api, model, layer, **kwargs)

        def call(method):
            return method.attribute(inputs(), **attribute_kwargs)

        return construct, call

    return make


def plain(api: str):
    model = net()
    return model, model.conv2, {}


def layer(pick: Callable[[Net], Any]):
    def build(api: str):
        model = net()
        return model, pick(model), {}

    return build


def wrapped(api: str):
    model = net()
    return (lambda x: model(x)), model.conv2, {}


def data_parallel(api: str):
    model = net()
    return nn.DataParallel(model), model.conv2, {}


def three_d_output(api: str):
    model = net()
    return ThreeDOutput(model), model.conv2, {}


def softmax_model(api: str, **kwargs: Any):
    torch.manual_seed(0)
    model = BasicModel_ConvNet().eval()  # Captum's test model ends in nn.Softmax
    return model, model.conv2, kwargs


def softmax_images() -> Tensor:
    torch.manual_seed(1)
    return torch.randn(2, 1, 10, 10)


def with_rules(rules: Any):
    def build(api: str):
        model = net()
        return model, model.conv2, {"rules": rules}

    return build


def nan_weight(api: str):
    model = net()
    with torch.no_grad():
        model.conv2.weight[0, 0, 0, 0] = float("nan")
    return model, model.conv1, {}


def scripted(api: str):
    model = net()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated
        return torch.jit.script(model), model.conv2, {}


class Upsampling(nn.Module):
    """``Net`` with an ``nn.ConvTranspose2d`` (no rule) after its conv2."""

    def __init__(self) -> None:
        super().__init__()
        self.net = net()
        self.up = nn.ConvTranspose2d(4, 4, 2, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        h = self.up(torch.relu(self.net.conv2(self.net.conv1(x))))
        return self.net.fc(torch.flatten(self.net.gap(h), 1))


def upsampling(api: str):
    model = Upsampling().eval()
    return model, model.net.conv1, {}


class Recurrent(nn.Module):
    """``Net``'s conv2 output read as a sequence of pixels by an ``nn.GRU``."""

    def __init__(self) -> None:
        super().__init__()
        self.net = net()
        self.gru = nn.GRU(4, 4, batch_first=True)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.net.conv2(self.net.conv1(x)))
        hidden, _ = self.gru(h.flatten(2).transpose(1, 2))
        return self.net.fc(hidden[:, -1])


def recurrent(api: str):
    model = Recurrent().eval()
    return model, model.net.conv1, {}


def weight_normed(rules: Any):
    def build(api: str):
        model = net()
        nn.utils.parametrizations.weight_norm(model.conv2)
        return model, model.conv1, {"rules": rules}

    return build


class Nested(nn.Module):
    """Explains its inner model inside its own forward pass."""

    def __init__(self, api: str) -> None:
        super().__init__()
        self.net = net()
        self.inner = construct_method(api, self.net, self.net.conv2)

    def forward(self, x: Tensor) -> Tensor:
        self.inner.attribute(x.detach(), target=0)
        return self.net(x)


def nested(api: str):
    model = Nested(api)
    return model, model.net.conv2, {}


class ChannelsLast(nn.Module):
    """A conv, then a LayerNorm and a Linear over channels-last (N x h x w x K)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.norm = nn.LayerNorm(4)
        self.fc = nn.Linear(4, 5)

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm(self.conv(x).permute(0, 2, 3, 1))
        return self.fc(h.mean((1, 2)))


def channels_last(api: str):
    torch.manual_seed(0)
    model = ChannelsLast().eval()
    return model, model.norm, {}


class Attention(nn.Module):
    """A conv, then self-attention over its positions."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 5)

    def forward(self, x: Tensor) -> Tensor:
        tokens = torch.relu(self.conv(x)).flatten(2).transpose(1, 2)
        scores = torch.softmax(tokens @ tokens.transpose(1, 2), -1)
        return self.fc((scores @ tokens).mean(1))


def attention(api: str):
    torch.manual_seed(0)
    model = Attention().eval()
    return model, model.conv, {}


def with_reshape(reshape_transform: Any):
    def build(api: str):
        model = net()
        return model, model.conv2, {"reshape_transform": reshape_transform}

    return build


class PerImageStd(nn.Module):
    """Divides each image by its own std: NaN on a constant image."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x / x.std((1, 2, 3), keepdim=True))


class Returning(nn.Module):
    """``Net`` with its logits in a dict or a tuple."""

    def __init__(self, container: type) -> None:
        super().__init__()
        self.net, self.container = net(), container

    def forward(self, x: Tensor) -> Any:
        logits = self.net(x)
        return {"logits": logits} if self.container is dict else (logits, logits)


def returning_module(container: type):
    def build(api: str):
        model = Returning(container)
        return model, model.net.conv2, {}

    return build


class Cut(nn.Module):
    """``Net``'s layers with the graph cut after ``conv1``."""

    def __init__(self, cut: str) -> None:
        super().__init__()
        self.net, self.cut = net(), cut

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.net.conv1(x))
        if self.cut == "detach":
            h = h.detach()
        if self.cut == "checkpoint":
            h = torch.utils.checkpoint.checkpoint(self.net.conv2, h, use_reentrant=True)
        y = self.net.fc(torch.flatten(self.net.gap(torch.relu(h)), 1))
        return (100 * y).long() if self.cut == "integer" else y


def cut(kind: str):
    def build(api: str):
        model = Cut(kind).eval()
        return model, model.net.conv1, {}

    return build


def returning(model: nn.Module, container: type) -> Callable[[Tensor], Any]:
    """``model`` with its logits wrapped in a dict or a tuple."""
    if container is dict:
        return lambda x: {"logits": model(x)}
    return lambda x: (model(x), model(x))


def metric_case(**overrides: Any) -> Callable[[str], tuple[Construct, Call]]:
    """A bad call of ``deletion_insertion``: a valid call with ``overrides``."""

    def make(api: str) -> tuple[Construct, Call]:
        def construct():
            torch.manual_seed(2)
            kwargs = {
                "forward_func": net(),
                "inputs": torch.randn(2, 3, 16, 16),
                "attributions": torch.rand(2, 1, 4, 4),
                "step": 64,
            }
            for key, value in overrides.items():
                kwargs[key] = value(kwargs) if callable(value) else value
            return kwargs

        return construct, lambda kwargs: deletion_insertion(**kwargs)

    return make


# ------------------------------------------------------------------------ rows
@dataclass(frozen=True)
class Row:
    api: str  # method or metric
    bad_input: str  # what is wrong (reStructuredText)
    raised_at: str  # "construction" or "call"
    exception: type
    message: tuple[str, ...]  # fragments of the message, in order
    make: Callable[[str], tuple[Construct, Call]]

    @property
    def id(self) -> str:
        return f"{self.api}: {self.bad_input}"

    def cells(self) -> tuple[str, str, str, str, str]:
        return (
            f"``{self.api}``",
            self.bad_input,
            self.raised_at,
            f"``{self.exception.__name__}``",
            " … ".join(f"``{fragment}``" for fragment in self.message),
        )


def for_methods(apis, bad_input, raised_at, exception, message, make) -> list[Row]:
    if isinstance(message, str):
        message = (message,)
    return [Row(api, bad_input, raised_at, exception, message, make) for api in apis]


ROWS: list[Row] = [
    # ---- the three methods
    *for_methods(
        METHODS,
        "layer not in the model",
        "construction",
        ValueError,
        "is not a submodule of the model passed as forward_func",
        method_case(lambda api: (net(), nn.Conv2d(4, 4, 1), {})),
    ),
    *for_methods(
        METHODS,
        "layer output not 4-D (the ``nn.Linear`` head)",
        "call",
        ValueError,
        "has shape (2, 5); CAM methods need a 4-D feature map",
        method_case(layer(lambda m: m.fc)),
    ),
    *for_methods(
        METHODS,
        "layer called twice in one forward pass (a shared ``nn.ReLU``)",
        "call",
        ValueError,
        "Layer 'act' is called 2 times in one forward pass",
        method_case(layer(lambda m: m.act)),
    ),
    *for_methods(
        METHODS,
        "layer never called in the forward pass",
        "call",
        ValueError,
        "Layer 'unused' was not called during the forward pass",
        method_case(layer(lambda m: m.unused)),
    ),
    *for_methods(
        METHODS,
        "empty list of layers",
        "construction",
        TypeError,
        "non-empty list of them",
        method_case(lambda api: (net(), [], {})),
    ),
    *for_methods(
        METHODS,
        "the same layer twice in the list",
        "construction",
        ValueError,
        "The list of layers holds the same module twice",
        method_case(layer(lambda m: [m.conv2, m.conv2])),
    ),
    *for_methods(
        METHODS,
        "``target=5`` for a model with 5 classes",
        "call",
        ValueError,
        "target 5 is out of range: the model has 5 classes",
        method_case(plain, target=5),
    ),
    *for_methods(
        METHODS,
        "``target=-1``",
        "call",
        ValueError,
        "target -1 is out of range",
        method_case(plain, target=-1),
    ),
    *for_methods(
        METHODS,
        "target list of 3 entries for 2 examples",
        "call",
        ValueError,
        "target has 3 entries but the inputs hold 2 examples",
        method_case(plain, target=[0, 1, 2]),
    ),
    *for_methods(
        METHODS,
        "float target ``1.0``",
        "call",
        TypeError,
        "target must be None, an int, a list of ints or a tensor, got float",
        method_case(plain, target=1.0),
    ),
    *for_methods(
        METHODS,
        "2-D target tensor",
        "call",
        ValueError,
        "target must be an integer tensor with 0 or 1 dimensions",
        method_case(plain, target=torch.tensor([[0], [1]])),
    ),
    *for_methods(
        METHODS,
        "float target tensor",
        "call",
        TypeError,
        "target must be an integer tensor of class indices",
        method_case(plain, target=torch.tensor([0.0, 1.0])),
    ),
    *for_methods(
        METHODS,
        "tuple target ``(0, 1)``",
        "call",
        TypeError,
        "Tuple targets (an index into outputs with more than 2 dimensions) are not supported",
        method_case(plain, target=(0, 1)),
    ),
    *for_methods(
        METHODS,
        "NaN in the input",
        "call",
        ValueError,
        "Inputs contain NaN or inf values",
        method_case(plain, inputs=lambda: with_value(images(), float("nan"))),
    ),
    *for_methods(
        METHODS,
        "inf in the input",
        "call",
        ValueError,
        "Inputs contain NaN or inf values",
        method_case(plain, inputs=lambda: with_value(images(), float("-inf"))),
    ),
    *for_methods(
        METHODS,
        "input a NumPy array",
        "call",
        TypeError,
        "inputs must be a tensor or a tuple of tensors, got ndarray",
        method_case(plain, inputs=lambda: np.zeros((2, 3, 8, 8), np.float32)),
    ),
    *for_methods(
        METHODS,
        "integer (``torch.long``) input",
        "call",
        RuntimeError,
        "only Tensors of floating point dtype can require gradients",
        method_case(plain, inputs=lambda: images().long()),
    ),
    *for_methods(
        METHODS,
        "model output N x 1 x C (not class scores N x C)",
        "call",
        ValueError,
        "these methods need class scores of shape (N, C)",
        method_case(three_d_output),
    ),
    *for_methods(
        METHODS,
        "model wrapped in ``nn.DataParallel``",
        "call",
        TypeError,
        "DataParallel models are not supported",
        method_case(data_parallel),
    ),
    *for_methods(
        ["LayerCam"],
        '``scaling="log"``',
        "call",
        ValueError,
        "scaling must be 'none' or 'tanh', got 'log'",
        method_case(plain, scaling="log"),
    ),
    # ---- the relevance methods
    *for_methods(
        RELEVANCE_METHODS,
        "float16 input (and model)",
        "call",
        TypeError,
        (
            "inputs have dtype torch.float16",
            "Convert the model and inputs with .float()",
        ),
        method_case(
            lambda api: (lambda m: (m, m.conv2, {}))(net().half()),
            inputs=lambda: images().half(),
        ),
    ),
    *for_methods(
        RELEVANCE_METHODS,
        "bfloat16 input (and model)",
        "call",
        TypeError,
        (
            "inputs have dtype torch.bfloat16",
            "Convert the model and inputs with .float()",
        ),
        method_case(
            lambda api: (lambda m: (m, m.conv2, {}))(net().bfloat16()),
            inputs=lambda: images().bfloat16(),
        ),
    ),
    *for_methods(
        METHODS,
        "channels-last layer output (N x h x w x K: a ``LayerNorm`` over the "
        "last dimension)",
        "call",
        ValueError,
        (
            "has shape (2, 8, 8, 4) and looks channels-last",
            "reshape_transform=lambda t: t.permute(0, 3, 1, 2)",
        ),
        method_case(channels_last),
    ),
    *for_methods(
        ["LayerCam"],
        "``reshape_transform`` returning a 2-D tensor",
        "call",
        ValueError,
        "into (2, 4); it must return a 4-D feature map N x K x h x w",
        method_case(with_reshape(lambda t: t.mean((2, 3)))),
    ),
    *for_methods(
        ["LayerCam"],
        "``reshape_transform`` not a function",
        "construction",
        TypeError,
        "reshape_transform must be a function of a tensor, got str",
        method_case(with_reshape("permute")),
    ),
    *for_methods(
        RELEVANCE_METHODS,
        "self-attention (a product of two activations) between layer and output",
        "call",
        TypeError,
        (
            "multiplies two tensors computed from the explained layer (matmul), as "
            "attention does",
            "Explain this model with LayerCam",
        ),
        method_case(attention),
    ),
    *for_methods(
        METHODS,
        "model returning a dict",
        "call",
        TypeError,
        (
            "The model returned a dict with keys ['logits'], not a tensor of class "
            "scores",
            "return self.model(x)['logits']",
        ),
        method_case(returning_module(dict)),
    ),
    *for_methods(
        METHODS,
        "model returning a tuple",
        "call",
        TypeError,
        (
            "The model returned a tuple of 2 elements",
            "return self.model(x)[0]",
        ),
        method_case(returning_module(tuple)),
    ),
    *for_methods(
        METHODS,
        "graph cut after the layer (``.detach()``)",
        "call",
        ValueError,
        (
            "Layer 'net.conv1' is not joined to the model's output by autograd",
            "Explain a layer after the cut",
        ),
        method_case(cut("detach")),
    ),
    *for_methods(
        METHODS,
        "``torch.utils.checkpoint`` with ``use_reentrant=True`` after the layer",
        "call",
        ValueError,
        ("torch.utils.checkpoint with use_reentrant=True", "use_reentrant=False"),
        method_case(cut("checkpoint")),
    ),
    *for_methods(
        METHODS,
        "integer model output",
        "call",
        TypeError,
        "The model's output has dtype torch.int64",
        method_case(cut("integer")),
    ),
    *for_methods(
        METHODS,
        "NaN weight in the model",
        "call",
        ValueError,
        "The model produced NaN or inf values",
        method_case(nan_weight),
    ),
    *for_methods(
        METHODS,
        "TorchScript model (``torch.jit.script``)",
        "construction",
        TypeError,
        "is a TorchScript module (torch.jit.script or torch.jit.trace)",
        method_case(scripted),
    ),
    *for_methods(
        METHODS,
        "``target=2**70`` (beyond int64)",
        "call",
        ValueError,
        "target 1180591620717411303424 is out of range",
        method_case(plain, target=2**70),
    ),
    *for_methods(
        METHODS,
        "an explanation of the model inside its own forward pass (nested)",
        "call",
        RuntimeError,
        "is already being explained in this thread",
        method_case(nested),
    ),
    *for_methods(
        RELEVANCE_METHODS,
        "``nn.ConvTranspose2d`` (changes the number of elements) without a rule",
        "call",
        TypeError,
        (
            "Module 'up' (ConvTranspose2d) has no LRP rule",
            "rules={ConvTranspose2d: EpsilonRule()}",
        ),
        method_case(upsampling),
    ),
    *for_methods(
        RELEVANCE_METHODS,
        "a recurrent module (``nn.GRU``: returns a tuple) without a rule",
        "call",
        TypeError,
        ("Module 'gru' (GRU) has no LRP rule", "rules={GRU: EpsilonRule()}"),
        method_case(recurrent),
    ),
    *for_methods(
        RELEVANCE_METHODS,
        "forward_func not an ``nn.Module`` (a function wrapping the model)",
        "construction",
        TypeError,
        "forward_func must be the torch.nn.Module itself",
        method_case(wrapped),
    ),
    *for_methods(
        RELEVANCE_METHODS,
        "unknown leaf module without a rule (``nn.Softmax`` in Captum's "
        "``BasicModel_ConvNet``)",
        "call",
        TypeError,
        (
            "Module 'softmax' (Softmax) has no LRP rule",
            "rules={Softmax: IdentityRule()}",
        ),
        method_case(softmax_model, inputs=softmax_images, target=0),
    ),
    *for_methods(
        RELEVANCE_METHODS,
        "a weight rule (``GammaRule``) for an unknown leaf module",
        "call",
        TypeError,
        "only IdentityRule or EpsilonRule can be applied to it as a whole",
        method_case(
            lambda api: softmax_model(api, rules={nn.Softmax: GammaRule()}),
            inputs=softmax_images,
            target=0,
        ),
    ),
    *for_methods(
        RELEVANCE_METHODS,
        "``rules`` not a mapping",
        "construction",
        TypeError,
        "rules must be a mapping from module types, modules or module names",
        method_case(with_rules([GammaRule()])),
    ),
    *for_methods(
        RELEVANCE_METHODS,
        "a rule that is not a Captum ``PropagationRule``",
        "construction",
        TypeError,
        "rules must be instances of captum's PropagationRule",
        method_case(with_rules({nn.Conv2d: "epsilon"})),
    ),
    *for_methods(
        RELEVANCE_METHODS,
        '``rules`` key naming no module (``"conv2x"``, misspelt)',
        "construction",
        ValueError,
        (
            "rules has the key 'conv2x', which names no module of the model",
            "closest names: 'conv2'",
        ),
        method_case(with_rules({"conv2x": EpsilonRule()})),
    ),
    *for_methods(
        RELEVANCE_METHODS,
        "``rules`` key a module of another model",
        "construction",
        ValueError,
        "rules has a Conv2d module as a key that is not a module of the model",
        method_case(with_rules({nn.Conv2d(4, 4, 3): EpsilonRule()})),
    ),
    *for_methods(
        RELEVANCE_METHODS,
        "``rules`` key a parametrization (``weight_norm``'s ``_WeightNorm``), "
        "which computes a weight",
        "construction",
        ValueError,
        (
            "would never be used: it is a parametrization",
            "give the rule to that layer ('conv2')",
        ),
        method_case(
            weight_normed({nn.utils.parametrizations._WeightNorm: EpsilonRule()})
        ),
    ),
    *for_methods(
        RELEVANCE_METHODS,
        "``IdentityRule`` for an operation that changes the number of elements "
        "(the ``nn.Linear`` head, 4 to 5)",
        "call",
        ValueError,
        (
            "IdentityRule was given for module 'fc', whose output (2, 5) has "
            "another number of elements than its input (2, 4)",
            "Give it EpsilonRule()",
        ),
        method_case(with_rules({"fc": IdentityRule()})),
    ),
    *for_methods(
        RELEVANCE_METHODS,
        '``initial_relevance="logit"``',
        "call",
        ValueError,
        "initial_relevance must be one of 'contrastive', 'target', 'clrp'; got 'logit'",
        method_case(plain, initial_relevance="logit"),
    ),
    *for_methods(
        RELEVANCE_METHODS,
        '``channel_weights="abs"``',
        "call",
        ValueError,
        "channel_weights must be one of 'signed', 'positive', 'sqrt', 'geometric', 'mass'; got 'abs'",
        method_case(plain, channel_weights="abs"),
    ),
    *for_methods(
        ["LayerShallowCam"],
        '``variant="v4"``',
        "call",
        ValueError,
        "variant must be one of 'v1', 'v2', 'v3'; got 'v4'",
        method_case(plain, variant="v4"),
    ),
    # ---- the metric
    *for_methods(
        ["deletion_insertion"],
        "attributions for 3 examples, inputs 2",
        "call",
        ValueError,
        "attributions of shape (3, 1, 4, 4) do not match inputs of shape (2, 3, 16, 16)",
        metric_case(attributions=torch.rand(3, 1, 4, 4)),
    ),
    *for_methods(
        ["deletion_insertion"],
        "2-channel layer attributions",
        "call",
        ValueError,
        "Sum or average multi-channel layer maps over channels",
        metric_case(attributions=torch.rand(2, 2, 4, 4)),
    ),
    *for_methods(
        ["deletion_insertion"],
        "N x 1 x h x w map of another aspect ratio (a channels-last layer's 16 x 96)",
        "call",
        ValueError,
        (
            "attributions of shape (2, 1, 16, 96) cannot be maps of inputs of shape "
            "(2, 3, 16, 16)",
            "another aspect ratio",
        ),
        metric_case(attributions=torch.rand(2, 1, 16, 96)),
    ),
    *for_methods(
        ["deletion_insertion"],
        "N x H x W attributions of the wrong size",
        "call",
        ValueError,
        "an N x H x W map must be (2, 16, 16)",
        metric_case(attributions=torch.rand(2, 8, 8)),
    ),
    *for_methods(
        ["deletion_insertion"],
        "``step=0``",
        "call",
        ValueError,
        "step must be > 0",
        metric_case(step=0),
    ),
    *for_methods(
        ["deletion_insertion"],
        "``step=-3``",
        "call",
        ValueError,
        "step must be > 0 (a positive number of pixels per step), got -3",
        metric_case(step=-3),
    ),
    *for_methods(
        ["deletion_insertion"],
        "``step=2.5``",
        "call",
        TypeError,
        "step must be an int",
        metric_case(step=2.5),
    ),
    *for_methods(
        ["deletion_insertion"],
        "``max_examples_per_batch=0``",
        "call",
        ValueError,
        "max_examples_per_batch must be > 0",
        metric_case(max_examples_per_batch=0),
    ),
    *for_methods(
        ["deletion_insertion"],
        "NaN in the attributions",
        "call",
        ValueError,
        "attributions contain non-finite values (NaN or inf)",
        metric_case(
            attributions=lambda kw: with_value(kw["attributions"], float("nan"))
        ),
    ),
    *for_methods(
        ["deletion_insertion"],
        "inf in the attributions",
        "call",
        ValueError,
        "attributions contain non-finite values (NaN or inf)",
        metric_case(
            attributions=lambda kw: with_value(kw["attributions"], float("inf"))
        ),
    ),
    *for_methods(
        ["deletion_insertion"],
        "NaN in the input",
        "call",
        ValueError,
        "inputs contain non-finite values (NaN or inf)",
        metric_case(inputs=lambda kw: with_value(kw["inputs"], float("nan"))),
    ),
    *for_methods(
        ["deletion_insertion"],
        "``target=5`` for a model with 5 classes",
        "call",
        ValueError,
        "target 5 is out of range: the model has 5 classes (valid targets 0 to 4)",
        metric_case(target=5),
    ),
    *for_methods(
        ["deletion_insertion"],
        "``target=[0, -1]``",
        "call",
        ValueError,
        "target -1 is out of range",
        metric_case(target=[0, -1]),
    ),
    *for_methods(
        ["deletion_insertion"],
        "target list of 3 entries for 2 examples",
        "call",
        ValueError,
        "target has 3 entries but the inputs hold 2 examples",
        metric_case(target=[0, 1, 2]),
    ),
    *for_methods(
        ["deletion_insertion"],
        "float target tensor",
        "call",
        TypeError,
        "target must be an integer tensor of class indices",
        metric_case(target=torch.tensor([0.0, 1.0])),
    ),
    *for_methods(
        ["deletion_insertion"],
        "tuple target ``(0, 1)``",
        "call",
        TypeError,
        "Tuple targets (an index into outputs with more than 2 dimensions) are not supported",
        metric_case(target=(0, 1)),
    ),
    *for_methods(
        ["deletion_insertion"],
        "3-D input (one image without the batch dimension)",
        "call",
        ValueError,
        "inputs must be a 4-D tensor N x C x H x W",
        metric_case(inputs=lambda kw: kw["inputs"][0]),
    ),
    *for_methods(
        ["deletion_insertion"],
        "empty batch",
        "call",
        ValueError,
        "inputs must not be empty",
        metric_case(
            inputs=lambda kw: kw["inputs"][:0],
            attributions=lambda kw: kw["attributions"][:0],
        ),
    ),
    *for_methods(
        ["deletion_insertion"],
        "5 x 5 images with the default (blurred) insertion substrate",
        "call",
        ValueError,
        "needs images of at least 6 x 6 pixels",
        metric_case(inputs=torch.randn(2, 3, 5, 5), step=5),
    ),
    *for_methods(
        ["deletion_insertion"],
        "deletion substrate that does not broadcast to the inputs",
        "call",
        ValueError,
        "does not broadcast to the inputs shape",
        metric_case(deletion_substrate=torch.zeros(2, 16)),
    ),
    *for_methods(
        ["deletion_insertion"],
        "forward_func returning a dict",
        "call",
        ValueError,
        ("forward_func must return a 2-D tensor B x K", "got a dict"),
        metric_case(forward_func=lambda kw: returning(kw["forward_func"], dict)),
    ),
    *for_methods(
        ["deletion_insertion"],
        "forward_func returning a tuple",
        "call",
        ValueError,
        ("forward_func must return a 2-D tensor B x K", "got a tuple"),
        metric_case(forward_func=lambda kw: returning(kw["forward_func"], tuple)),
    ),
    *for_methods(
        ["deletion_insertion"],
        "``target=2**70`` (beyond int64)",
        "call",
        ValueError,
        "target 1180591620717411303424 is out of range",
        metric_case(target=2**70),
    ),
    *for_methods(
        ["deletion_insertion"],
        "``step=2**70`` (beyond int64)",
        "call",
        ValueError,
        "step 1180591620717411303424 is out of range",
        metric_case(step=2**70),
    ),
    *for_methods(
        ["deletion_insertion"],
        "``insertion_substrate=RiseBlur(10, 5)`` (an even window)",
        "construction",
        ValueError,
        "RiseBlur kernel_size must be an odd positive int",
        metric_case(insertion_substrate=lambda kw: RiseBlur(10, 5)),
    ),
    *for_methods(
        ["deletion_insertion"],
        "``insertion_substrate=RiseBlur(11, sigma=0)``",
        "construction",
        ValueError,
        "RiseBlur sigma must be a finite number > 0",
        metric_case(insertion_substrate=lambda kw: RiseBlur(11, sigma=0)),
    ),
    *for_methods(
        ["deletion_insertion"],
        "model NaN on the all-zero deletion image (each image divided by its std)",
        "call",
        ValueError,
        (
            "forward_func returned NaN or inf on example 0 at the deletion point",
            "deletion substrate (zeros, the default)",
        ),
        metric_case(forward_func=lambda kw: PerImageStd(kw["forward_func"])),
    ),
    *for_methods(
        ["deletion_insertion"],
        "``score_func`` returning NaN",
        "call",
        ValueError,
        "score_func returned NaN or inf for finite model outputs",
        metric_case(score_func=lambda kw: lambda out, t: out[:, 0] * float("nan")),
    ),
    *for_methods(
        ["deletion_insertion"],
        "forward_func returning N x 1 x C",
        "call",
        ValueError,
        "forward_func must return a 2-D tensor B x K",
        metric_case(forward_func=lambda kw: ThreeDOutput(kw["forward_func"])),
    ),
]


# ------------------------------------------------ every registered method
def registry_rows() -> list[Row]:
    """The table's method rows for every registered method, by its registry
    name: a row the three methods share applies to any method; a row of the
    two relevance methods (rules, initial relevance, channel weights, half
    precision, ``forward_func`` not a module) applies to the relevance methods
    only, as the others take no such option and propagate no relevance. Rows
    of one class alone (LayerCam's half-precision behaviour, ShallowCam's
    ``variant``) stay with that class."""
    apis: dict[str, set[str]] = {}
    first: dict[str, Row] = {}
    for row in ROWS:
        if row.api in CLASSES:
            apis.setdefault(row.bad_input, set()).add(row.api)
            first.setdefault(row.bad_input, row)
    rows = []
    for bad_input, row in first.items():
        if apis[bad_input] == set(METHODS):
            names = registered()
        elif apis[bad_input] == set(RELEVANCE_METHODS):
            names = registered(relevance=True)
        else:
            continue
        rows += [replace(row, api=name) for name in names]
    return rows


def method_cases() -> list[str]:
    """The ids of :func:`registry_rows` (``name: bad input``)."""
    return [row.id for row in registry_rows()]


REGISTRY_ROWS = registry_rows()


# ----------------------------------------------------------------------- tests
def _fragments_pattern(fragments: tuple[str, ...]) -> str:
    return ".*".join(re.escape(f) for f in fragments)


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_bad_input(row: Row) -> None:
    check_row(row)


@pytest.mark.parametrize("row", REGISTRY_ROWS, ids=[row.id for row in REGISTRY_ROWS])
def test_bad_input_to_every_registered_method(row: Row) -> None:
    check_row(row)


def check_row(row: Row) -> None:
    construct, call = row.make(row.api)
    pattern = _fragments_pattern(row.message)
    if row.raised_at == "construction":
        with pytest.raises(row.exception, match=pattern) as info:
            construct()
    else:
        target = construct()  # must not raise: the problem is found at the call
        with pytest.raises(row.exception, match=pattern) as info:
            call(target)
    assert type(info.value) is row.exception  # not a subclass


def test_rows_are_unique_and_cover_the_brief() -> None:
    keys = [(row.api, row.bad_input) for row in ROWS]
    assert len(keys) == len(set(keys))
    for api in METHODS:
        wanted = [
            "layer not in the model",
            "layer output not 4-D",
            "layer called twice",
            "target=5",
            "target list of 3 entries",
            "NaN in the input",
            "inf in the input",
        ]
        if api != "LayerCam":
            wanted += [
                "float16 input",
                "unknown leaf module",
                "initial_relevance",
                "channel_weights",
                "forward_func not an ``nn.Module``",
            ]
        if api == "LayerShallowCam":
            wanted.append("variant")
        have = [row.bad_input for row in ROWS if row.api == api]
        for item in wanted:
            assert any(item in bad for bad in have), (api, item)
    metric = [row.bad_input for row in ROWS if row.api == "deletion_insertion"]
    for item in (
        "attributions for 3",
        "step=0",
        "step=-3",
        "NaN in the att",
        "target=5",
    ):
        assert any(item in bad for bad in metric), item


def parse_list_table(text: str) -> list[tuple[str, ...]]:
    """The data rows (header excluded) of the first ``list-table`` in ``text``."""
    lines = text.splitlines()
    start = next(
        i for i, line in enumerate(lines) if line.startswith(".. list-table::")
    )
    rows: list[list[str]] = []
    for line in lines[start + 1 :]:
        if line and not line.startswith(" "):
            break  # the end of the directive
        stripped = line.strip()
        if stripped.startswith("* - "):
            rows.append([stripped[4:]])
        elif stripped.startswith("- ") and rows:
            rows[-1].append(stripped[2:])
        elif stripped and rows and not stripped.startswith(":"):
            rows[-1][-1] += " " + stripped  # a cell continued on the next line
    return [tuple(row) for row in rows[1:]]


def render_table() -> str:
    header = ("Method", "Bad input", "Raised at", "Exception", "Message contains")
    out = [
        ".. list-table:: Bad inputs and what they get",
        "   :header-rows: 1",
        "   :widths: 14 34 10 10 32",
        "",
    ]
    for cells in [header] + [row.cells() for row in ROWS]:
        out.append(f"   * - {cells[0]}")
        out.extend(f"     - {cell}" for cell in cells[1:])
    return "\n".join(out) + "\n"


def test_docs_table_matches_rows() -> None:
    doc_rows = parse_list_table(DOCS.read_text(encoding="utf-8"))
    data_rows = [row.cells() for row in ROWS]
    missing = [r for r in data_rows if r not in doc_rows]
    extra = [r for r in doc_rows if r not in data_rows]
    assert not missing, f"rows tested but not in {DOCS.name}: {missing}"
    assert not extra, f"rows in {DOCS.name} that no test checks: {extra}"
    assert len(doc_rows) == len(data_rows)


def test_parse_list_table_reads_rendered_rows() -> None:
    assert parse_list_table(render_table()) == [row.cells() for row in ROWS]


@pytest.mark.parametrize("api", [*METHODS, *registered()])
def test_empty_batch(api: str) -> None:
    """An empty batch gives empty maps (as LayerCam does) or a ValueError that
    says so; not an internal error from inside the package."""
    model = net()
    method = construct_method(api, model, model.conv2)
    try:
        maps = method.attribute(images()[:0])
    except ValueError:
        return
    assert maps.shape == (0, 1, 8, 8)


if __name__ == "__main__":  # pragma: no cover
    print(render_table())
