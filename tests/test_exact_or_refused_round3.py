"""Issue 22, "exact or refused, round 3": each defect that gave silently wrong
output or a raw internal error, pinned by the behaviour that replaced it."""

from __future__ import annotations

import json
import warnings
from collections import namedtuple

import pytest
import torch
from models import TwoConvReluNet, two_conv_relu_net
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from captum_shallowcam import (
    LayerCam,
    LayerRelevanceCam,
    LayerShallowCam,
    fuse_layer_maps,
)
from captum_shallowcam.attr._engine import _Engine
from captum_shallowcam.attr.rules import validate_rules
from captum_shallowcam.metrics import GaussianBlur, RiseBlur, deletion_insertion
from captum_shallowcam.rules import EpsilonRule, IdentityRule

RELEVANCE_METHODS = {
    "LayerRelevanceCam": LayerRelevanceCam,
    "LayerShallowCam": LayerShallowCam,
}


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
    model, x = two_conv_relu_net(), images(size=16)
    method = RELEVANCE_METHODS[name](model, model.relu1)
    want = quiet_attribute(method, x, target=[1, 3])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = quiet_attribute(method, x, target=[1, 3])
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


def test_autocast_is_back_on_after_the_call() -> None:
    model, x = two_conv_relu_net(), images()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        quiet_attribute(LayerShallowCam(model, model.relu1), x, target=0)
        assert torch.is_autocast_enabled("cpu")
        assert model(x).dtype == torch.bfloat16


# -------------------------------------------------- 3. rules that match nothing
@pytest.mark.parametrize("name", RELEVANCE_METHODS)
def test_a_misspelt_rule_key_is_refused_with_the_closest_names(name: str) -> None:
    model = two_conv_relu_net()
    with pytest.raises(ValueError, match="'c2x'.*closest names: 'conv2'"):
        RELEVANCE_METHODS[name](model, model.relu1, rules={"c2x": EpsilonRule(10)})


def test_a_rule_keyed_by_a_module_of_another_model_is_refused() -> None:
    model, other = two_conv_relu_net(), two_conv_relu_net()
    with pytest.raises(ValueError, match="not a module of the model"):
        LayerShallowCam(model, model.relu1, rules={other.conv2: EpsilonRule(10)})


def test_a_rule_keyed_by_the_second_name_of_a_shared_module_is_refused() -> None:
    model = two_conv_relu_net()
    model.relu_again = model.relu1  # one module, two names
    with pytest.raises(ValueError, match="second name of module 'relu1'"):
        LayerShallowCam(model, model.conv1, rules={"relu_again": IdentityRule()})


def test_rule_keys_that_match_still_work() -> None:
    model, x = two_conv_relu_net(), images()
    by_name = LayerShallowCam(model, model.relu1, rules={"conv2": EpsilonRule(10)})
    by_module = LayerShallowCam(
        model, model.relu1, rules={model.conv2: EpsilonRule(10)}
    )
    default = LayerShallowCam(model, model.relu1)
    # A type the model lacks is allowed: one rule map serves many models.
    by_type = LayerShallowCam(
        model, model.relu1, rules={nn.Conv2d: EpsilonRule(10), nn.Conv3d: EpsilonRule()}
    )
    named = quiet_attribute(by_name, x, target=0)
    torch.testing.assert_close(named, quiet_attribute(by_module, x, target=0))
    assert not torch.allclose(named, quiet_attribute(default, x, target=0))
    quiet_attribute(by_type, x, target=0)


# ------------------------------------------ 4. token and channels-last layers
def channels_first(t: Tensor) -> Tensor:
    return t.permute(0, 3, 1, 2)


def layer_cam_by_hand(model, layer, x: Tensor, target: int, reshape) -> Tensor:
    """relu(sum_k relu(G_k) A_k) with A, G taken by a hook and torch.autograd."""
    captured = []
    handle = layer.register_forward_hook(lambda m, i, o: captured.append(o))
    try:
        score = model(x)[:, target].sum()
    finally:
        handle.remove()
    (gradient,) = torch.autograd.grad(score, captured[0])
    a, g = reshape(captured[0].detach()), reshape(gradient)
    return torch.relu((torch.relu(g) * a).sum(1, keepdim=True))


@pytest.fixture(scope="module")
def swin():
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.swin_t(weights=None).eval()


def test_a_channels_last_layer_is_refused_without_reshape_transform(swin) -> None:
    x = images(1, 64)
    with pytest.raises(ValueError, match=r"\(1, 16, 16, 96\) and looks channels-last"):
        LayerCam(swin, swin.features[1]).attribute(x, target=0)


def test_layer_cam_with_reshape_transform_on_swin(swin) -> None:
    x = images(1, 64)
    cam = LayerCam(swin, swin.features[1], reshape_transform=channels_first)
    got = cam.attribute(x, target=3)
    assert got.shape == (1, 1, 16, 16)
    want = layer_cam_by_hand(swin, swin.features[1], x, 3, channels_first)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


class TinyViT(nn.Module):
    """Patches of 4 x 4 pixels, a class token, one encoder block, a head."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.patches = nn.Conv2d(3, dim, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        self.block = nn.TransformerEncoderLayer(
            dim, 2, 32, dropout=0.0, batch_first=True
        )
        self.head = nn.Linear(dim, 5)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.patches(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(len(x), -1, -1), tokens], 1)
        return self.head(self.block(tokens)[:, 0])


def tokens_to_map(t: Tensor) -> Tensor:
    return t[:, 1:].unflatten(1, (4, 4)).permute(0, 3, 1, 2)


def tiny_vit() -> TinyViT:
    torch.manual_seed(0)
    return TinyViT().eval()


def test_layer_cam_with_reshape_transform_on_a_vit_block() -> None:
    model, x = tiny_vit(), images(2, 16)
    cam = LayerCam(model, model.block, reshape_transform=tokens_to_map)
    got = cam.attribute(x, target=[1, 1])
    assert got.shape == (2, 1, 4, 4)
    want = layer_cam_by_hand(model, model.block, x, 1, tokens_to_map)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


def test_tokens_without_reshape_transform_name_it() -> None:
    model, x = tiny_vit(), images(2, 16)
    with pytest.raises(ValueError, match="has shape .2, 17, 16.*reshape_transform"):
        LayerCam(model, model.block).attribute(x, target=0)


def test_a_reshape_transform_that_gives_no_feature_map_is_refused() -> None:
    model, x = tiny_vit(), images(2, 16)
    cam = LayerCam(model, model.block, reshape_transform=lambda t: t[:, 0])
    with pytest.raises(ValueError, match=r"into \(2, 16\); it must return a 4-D"):
        cam.attribute(x, target=0)


@pytest.mark.parametrize("name", RELEVANCE_METHODS)
def test_relevance_through_attention_is_refused(name: str, swin) -> None:
    model = tiny_vit()
    method = RELEVANCE_METHODS[name](model, model.patches)
    with pytest.raises(TypeError, match="'block.self_attn' .* as attention does"):
        method.attribute(images(2, 16), target=0)
    method = RELEVANCE_METHODS[name](swin, swin.features[0][0])
    with pytest.raises(TypeError, match=r"'features\.1\.0\.attn' .*matmul"):
        method.attribute(images(1, 64), target=0)


@pytest.mark.parametrize("name", RELEVANCE_METHODS)
def test_attention_below_the_layer_is_no_reason_to_refuse(name: str) -> None:
    """Relevance stops at the layer: a product of activations under it is never crossed."""

    class AttentionBelow(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.fc = nn.Linear(4, 5)

        def forward(self, x: Tensor) -> Tensor:
            x = x * torch.sigmoid(torch.einsum("nchw,nchw->nhw", x, x))[:, None]
            return self.fc(torch.relu(self.conv(x)).mean((2, 3)))

    torch.manual_seed(0)
    model = AttentionBelow().eval()
    quiet_attribute(RELEVANCE_METHODS[name](model, model.conv), images(), target=0)


# ------------------------------------------------------- 5. NaN without a word
class PerImageStandardised(nn.Module):
    """Normalises each image by its own std: NaN on a constant image."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean((1, 2, 3), keepdim=True)
        return self.net((x - mean) / x.std((1, 2, 3), keepdim=True))


def test_a_nan_from_the_deletion_substrate_is_refused_naming_it() -> None:
    model, x = PerImageStandardised(two_conv_relu_net()), images(size=16)
    maps = torch.rand(2, 1, 4, 4)
    with pytest.raises(ValueError, match=r"deletion substrate \(zeros, the default\)"):
        deletion_insertion(model, x, maps, target=0, step=64)
    # With a substrate on which the model is finite, it works.
    result = deletion_insertion(
        model, x, maps, target=0, step=64, deletion_substrate=GaussianBlur(5, 2.0)
    )
    assert torch.isfinite(result.overall).all()


def test_a_score_func_returning_nan_is_refused() -> None:
    model, x = two_conv_relu_net(), images(size=16)

    def nan_score(outputs: Tensor, targets: Tensor) -> Tensor:
        return outputs.gather(1, targets[:, None])[:, 0].log()  # logits < 0 -> NaN

    with pytest.raises(ValueError, match="score_func returned NaN or inf for finite"):
        deletion_insertion(
            model, x, torch.rand(2, 1, 4, 4), target=0, step=64, score_func=nan_score
        )


@pytest.mark.parametrize(
    "blur, message",
    [
        (lambda: RiseBlur(11, sigma=0), "RiseBlur sigma must be a finite number > 0"),
        (lambda: RiseBlur(10, 5), "RiseBlur kernel_size must be an odd positive int"),
        (lambda: GaussianBlur(4, 1.0), "GaussianBlur kernel_size must be an odd"),
        (lambda: GaussianBlur(5, float("nan")), "GaussianBlur sigma must be a finite"),
        (lambda: RiseBlur(11.5, 5), "got 11.5"),
    ],
)
def test_blur_parameters_are_validated(blur, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        blur()


def test_fusing_a_nan_map_is_refused() -> None:
    maps = [torch.rand(2, 1, 4, 4), torch.rand(2, 1, 8, 8)]
    maps[1][0, 0, 1, 1] = float("nan")
    with pytest.raises(ValueError, match=r"Map 1 of layer_maps .* NaN or inf"):
        fuse_layer_maps(maps)


def test_report_refuses_nan_scores(tmp_path, capsys) -> None:
    from captum_shallowcam.cli import main
    from captum_shallowcam.experiments.results import EvaluationResult

    result = EvaluationResult(
        {"model": "m", "images": "i", "step": 64, "layers": ["a"], "protocol": "p"},
        ["x.jpg", "y.jpg"],
        [0, 1],
    )
    result.scores = {
        "layercam": {
            "a": {
                "deletion": [0.2, float("nan")],
                "insertion": [0.6, 0.8],
                "overall": [40.0, float("nan")],
            }
        }
    }
    path = tmp_path / "r.json"
    path.write_text(json.dumps(result.to_dict()))
    with pytest.raises(SystemExit) as refused:
        main(["report", str(path), "--out", str(tmp_path / "out.json")])
    assert refused.value.code == 2
    err = capsys.readouterr().err
    assert "the deletion score of layercam at a is nan for y.jpg" in err
    assert not (tmp_path / "out.md").exists()


# --------------------------------------------- 6. models returning containers
class WithAux(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = two_conv_relu_net()

    def forward(self, x: Tensor):
        logits = self.net(x)
        return namedtuple("Output", "logits aux")(logits, logits.relu())


class Scores(nn.Module):
    """The wrapper the message suggests."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x).logits


@pytest.mark.parametrize("name", ["LayerCam", *RELEVANCE_METHODS])
def test_a_model_returning_a_named_tuple_is_refused_with_the_wrapper(name) -> None:
    method = {"LayerCam": LayerCam, **RELEVANCE_METHODS}[name]
    model, x = WithAux().eval(), images()
    with pytest.raises(TypeError, match=r"named tuple Output\('logits', 'aux'\)"):
        method(model, model.net.relu1).attribute(x, target=0)
    wrapped = quiet_attribute(method(Scores(model), model.net.relu1), x, target=0)
    plain = quiet_attribute(method(model.net, model.net.relu1), x, target=0)
    torch.testing.assert_close(wrapped, plain)


# ------------------------------------------ 7. graph cut between layer and output
class CutNet(nn.Module):
    """``TwoConvReluNet``'s function with the graph cut after ``conv1`` in one of many ways."""

    def __init__(self, cut: str) -> None:
        super().__init__()
        self.net, self.cut = two_conv_relu_net(), cut
        if cut == "quantized":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # torch.ao
                self.net.fc = torch.ao.quantization.quantize_dynamic(
                    nn.Sequential(self.net.fc), {nn.Linear}, dtype=torch.qint8
                )

    def forward(self, x: Tensor) -> Tensor:
        net = self.net
        h = net.relu1(net.conv1(x))
        if self.cut == "detach":
            h = h.detach()
        if self.cut == "no_grad":
            with torch.no_grad():
                h = net.relu2(net.conv2(h))
        elif self.cut.startswith("checkpoint"):
            reentrant = self.cut == "checkpoint_reentrant"
            h = checkpoint(self.stage2, h, use_reentrant=reentrant)
        else:
            h = self.stage2(h)
        y = net.fc(torch.flatten(net.pool(h), 1))
        if self.cut == "integer_output":
            y = (100 * y).long()
        if self.cut == "detached_output":
            y = y.detach()
        return y

    def stage2(self, h: Tensor) -> Tensor:
        return self.net.relu2(self.net.conv2(h))


ALL_METHODS = {"LayerCam": LayerCam, **RELEVANCE_METHODS}


@pytest.mark.parametrize("name", ALL_METHODS)
@pytest.mark.parametrize(
    "cut, error, message",
    [
        ("detach", ValueError, "Layer 'net.conv1' is not joined to the model's output"),
        ("no_grad", ValueError, "Layer 'net.conv1' is not joined .* torch.no_grad"),
        ("quantized", ValueError, "not joined .*a dynamically quantized nn.Linear"),
        ("checkpoint_reentrant", ValueError, "use_reentrant=True.*use_reentrant=False"),
        ("integer_output", TypeError, "output has dtype torch.int64"),
        ("detached_output", ValueError, "output does not depend on its input"),
    ],
)
def test_a_graph_cut_between_layer_and_output_is_named(name, cut, error, message):
    model = CutNet(cut).eval()
    state = {
        k: v.clone() for k, v in model.state_dict().items() if isinstance(v, Tensor)
    }
    method = ALL_METHODS[name](model, model.net.conv1)
    with pytest.raises(error, match=message):
        quiet_attribute(method, images(), target=0)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())


@pytest.mark.parametrize("name", ALL_METHODS)
def test_non_reentrant_checkpointing_is_explained_exactly(name: str) -> None:
    plain, checkpointed, x = (
        CutNet("none").eval(),
        CutNet("checkpoint").eval(),
        images(),
    )
    want = quiet_attribute(ALL_METHODS[name](plain, plain.net.conv1), x, target=[0, 3])
    got = quiet_attribute(
        ALL_METHODS[name](checkpointed, checkpointed.net.conv1), x, target=[0, 3]
    )
    torch.testing.assert_close(got, want, rtol=0, atol=0)


# ------------------------------------------------- the "unclear" items
def test_an_autocast_dtype_that_is_not_a_float_is_refused():
    from captum_shallowcam.metrics import deletion_insertion

    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 2, 3), torch.nn.Flatten(), torch.nn.Linear(2 * 14 * 14, 3)
    ).eval()
    x = torch.randn(1, 3, 16, 16)
    with pytest.raises(ValueError, match="autocast_dtype must be torch.bfloat16 or"):
        deletion_insertion(
            model, x, torch.rand(1, 1, 16, 16), target=0, step=64,
            autocast_dtype=torch.int32,
        )  # fmt: skip


def test_a_class_name_in_labels_csv_names_the_file_and_the_line(tmp_path):
    from PIL import Image

    from captum_shallowcam.experiments.images import read_image_folder

    Image.new("RGB", (32, 32)).save(tmp_path / "a.jpg")
    Image.new("RGB", (32, 32)).save(tmp_path / "b.jpg")
    (tmp_path / "labels.csv").write_text("file,class_index\na.jpg,3\nb.jpg,cat\n")
    with pytest.raises(ValueError, match=r"labels.csv, line 3: class_index 'cat'"):
        read_image_folder(tmp_path)


@pytest.mark.parametrize("key", [nn.BatchNorm2d, "1"])
def test_a_rule_for_batch_norm_is_refused_not_ignored(key):
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(4, 3),
    ).eval()  # fmt: skip
    with pytest.raises(ValueError, match="BatchNorm gets no rule, it is folded"):
        LayerShallowCam(model, model[2], rules={key: EpsilonRule()})


class CountsItsCalls(nn.Module):
    """An eval-mode model that counts its forward calls in a buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4, 3)
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        return self.fc(self.relu(self.conv(x)).mean((2, 3)))


@pytest.mark.parametrize("wrap", [False, True])
def test_a_buffer_the_model_changes_itself_is_put_back(wrap):
    model = CountsItsCalls().eval()
    forward = (lambda x: model(x)) if wrap else model
    x = torch.randn(2, 3, 8, 8)
    LayerCam(forward, model.relu).attribute(x, target=0)
    deletion_insertion(forward, x, torch.rand(2, 1, 6, 6), target=0, step=16)
    if not wrap:
        LayerShallowCam(model, model.relu).attribute(x, target=0)
    assert model.calls.item() == 0


# ---------------------------------- unclear items: recurrent modules, weight_norm
class RecurrentNet(nn.Module):
    """conv -> ReLU -> pixels as a sequence -> a recurrent module -> linear. The
    last hidden states pass an ``nn.Identity`` as N x L x H x 1, so relevance can
    be read just above the recurrent module."""

    def __init__(self, recurrent: type[nn.RNNBase] = nn.GRU) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.recurrent = recurrent(4, 5, batch_first=True)
        self.above = nn.Identity()
        self.fc = nn.Linear(5, 3)

    def forward(self, x: Tensor) -> Tensor:
        sequence = self.relu(self.conv(x)).flatten(2).transpose(1, 2)
        hidden, _ = self.recurrent(sequence)
        hidden = self.above(hidden.unsqueeze(-1)).squeeze(-1)
        return self.fc(hidden[:, -1])


def recurrent_net(recurrent: type[nn.RNNBase] = nn.GRU) -> RecurrentNet:
    torch.manual_seed(0)
    return RecurrentNet(recurrent).eval()


def model_state(model: nn.Module) -> tuple:
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [(dict(m._forward_hooks), dict(m._forward_pre_hooks)) for m in model.modules()],
    )


@pytest.mark.parametrize("recurrent", [nn.GRU, nn.LSTM])
@pytest.mark.parametrize("name", RELEVANCE_METHODS)
def test_a_recurrent_module_without_a_rule_is_refused_naming_it(name, recurrent):
    model = recurrent_net(recurrent)
    before = model_state(model)
    method = RELEVANCE_METHODS[name](model, model.conv)
    kind = recurrent.__name__
    with pytest.raises(
        TypeError,
        match=rf"Module 'recurrent' \({kind}\) has no LRP rule.*"
        rf"rules=\{{{kind}: EpsilonRule\(\)\}}",
    ):
        method.attribute(images(), target=0)
    state_dicts_equal = all(
        torch.equal(before[0][k], v) for k, v in model.state_dict().items()
    )
    assert state_dicts_equal and before[1] == model_state(model)[1]


def relevance_below_and_above(model: nn.Module, rules) -> tuple[Tensor, Tensor]:
    """The relevance (one-hot on class 1) at ``model.relu`` and ``model.above``,
    from the engine."""
    engine = _Engine(
        model, [model.relu, model.above], validate_rules(rules, model), False, True
    )
    with engine.hooked(), torch.enable_grad():
        output = engine.forward(images(), None)
        initial = torch.nn.functional.one_hot(torch.tensor([1, 1]), 3).float()
        below, above = engine.relevance(output, initial, engine.captures, False)
    return below, above


@pytest.mark.parametrize("recurrent", [nn.GRU, nn.LSTM])
def test_a_recurrent_module_with_its_rule_equals_explicit_epsilon(recurrent):
    """The rule the refusal suggests is applied to the module as a whole:
    R_in = x * J^T (R_out / (z + epsilon sign z)), for the output the model
    uses (the LSTM's output is a nested tuple)."""
    model, epsilon = recurrent_net(recurrent), 0.5
    below, above = relevance_below_and_above(model, {recurrent: EpsilonRule(epsilon)})
    with torch.enable_grad():
        sequence = model.relu(model.conv(images())).flatten(2).transpose(1, 2)
        sequence = sequence.detach().requires_grad_(True)
        z = model.recurrent(sequence)[0]
        ratio = above.squeeze(-1) / (z + epsilon * torch.where(z >= 0, 1.0, -1.0))
        (grad,) = torch.autograd.grad(z, sequence, ratio.detach())
    explicit = (sequence * grad).transpose(1, 2).reshape(below.shape)
    torch.testing.assert_close(below, explicit.detach(), rtol=1e-4, atol=1e-7)


WEIGHT_NORMS = {
    "parametrizations.weight_norm": nn.utils.parametrizations.weight_norm,
    "weight_norm": nn.utils.weight_norm,
}


def weight_normed_pair(api: str) -> tuple[TwoConvReluNet, TwoConvReluNet]:
    """TwoConvReluNet with weight_norm on conv2, and a plain one with the weight
    it computes."""
    model = two_conv_relu_net()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # nn.utils.weight_norm
        WEIGHT_NORMS[api](model.conv2)
    plain = two_conv_relu_net()
    with torch.no_grad():
        plain.conv2.weight.copy_(model.conv2.weight)
    return model, plain


@pytest.mark.parametrize("api", WEIGHT_NORMS)
@pytest.mark.parametrize("name", RELEVANCE_METHODS)
def test_weight_norm_gives_the_map_of_the_weight_it_computes(name, api):
    model, plain = weight_normed_pair(api)
    x, method = images(), RELEVANCE_METHODS[name]
    got = quiet_attribute(method(model, model.relu1), x, target=[0, 2])
    want = quiet_attribute(method(plain, plain.relu1), x, target=[0, 2])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    # A rule for the layer whose weight is normalised applies to it.
    rules = {"conv2": EpsilonRule(10)}
    got = quiet_attribute(method(model, model.relu1, rules=rules), x, target=0)
    want = quiet_attribute(method(plain, plain.relu1, rules=rules), x, target=0)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "key",
    [nn.utils.parametrizations._WeightNorm, "conv2.parametrizations.weight.0"],
)
def test_a_rule_for_a_parametrization_is_refused_naming_the_layer(key):
    model, _ = weight_normed_pair("parametrizations.weight_norm")
    with pytest.raises(ValueError, match=r"parametrization.*that layer \('conv2'\)"):
        LayerShallowCam(model, model.relu1, rules={key: EpsilonRule()})
