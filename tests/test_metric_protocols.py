"""Protocol presets, RISE's own blur, and the metric's reusable parts."""

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from captum_shallowcam import LayerCam
from captum_shallowcam.metrics import (
    PROTOCOLS,
    GaussianBlur,
    RiseBlur,
    deletion_insertion,
    protocol_kwargs,
    rise_kernel,
)
from captum_shallowcam.metrics._perturbation import ExampleGames, Game, score_games


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1),
        nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(24, 5),
    ).eval()  # fmt: skip


# ------------------------------------------------------------------- RISE


def test_rise_kernel_equals_scipy_gaussian_filter_of_a_delta():
    ndimage = pytest.importorskip("scipy.ndimage", reason="scipy gives the reference")
    for size, sigma in ((11, 5.0), (51, 50.0), (7, 1.5)):
        delta = np.zeros((size, size))
        delta[size // 2, size // 2] = 1
        expected = ndimage.gaussian_filter(delta, sigma).astype("float32")
        np.testing.assert_allclose(
            rise_kernel(size, sigma).numpy(), expected, atol=1e-8
        )
    # Much flatter than a truncated Gaussian: the corner keeps ~88% of the centre.
    kernel = rise_kernel(11, 5.0)
    assert 0.85 < float(kernel[0, 0] / kernel[5, 5]) < 0.9


def _rise_causal_metric(model, img, explanation, step, mode):
    """RISE's ``CausalMetric.single_run`` and ``auc`` (eclique/RISE,
    evaluation.py), line by line, with ``HW`` the image's area instead of
    224 * 224, ``.cuda()`` dropped, and its notebook's blur and softmax model."""
    from scipy.ndimage import gaussian_filter

    def gkern(klen, nsig):
        inp = np.zeros((klen, klen))
        inp[klen // 2, klen // 2] = 1
        k = gaussian_filter(inp, nsig)
        kern = np.zeros((3, 3, klen, klen))
        kern[0, 0] = k
        kern[1, 1] = k
        kern[2, 2] = k
        return torch.from_numpy(kern.astype("float32"))

    klen, ksig = 11, 5
    kern = gkern(klen, ksig)
    blur = lambda x: nn.functional.conv2d(x, kern, padding=klen // 2)  # noqa: E731
    substrate_fn = blur if mode == "ins" else torch.zeros_like
    model = nn.Sequential(model, nn.Softmax(dim=1))
    HW = img.shape[-1] * img.shape[-2]  # noqa: N806 - RISE's name

    pred = model(img)
    top, c = torch.max(pred, 1)
    c = c.cpu().numpy()[0]
    n_steps = (HW + step - 1) // step
    if mode == "del":
        start = img.clone()
        finish = substrate_fn(img)
    else:
        start = substrate_fn(img)
        finish = img.clone()
    scores = np.empty(n_steps + 1)
    salient_order = np.flip(np.argsort(explanation.reshape(-1, HW), axis=1), axis=-1)
    for i in range(n_steps + 1):
        pred = model(start)
        scores[i] = pred[0, c]
        if i < n_steps:
            coords = salient_order[:, step * i : step * (i + 1)]
            start.cpu().numpy().reshape(1, 3, HW)[0, :, coords] = (
                finish.cpu().numpy().reshape(1, 3, HW)[0, :, coords]
            )
    return (scores.sum() - scores[0] / 2 - scores[-1] / 2) / (scores.shape[0] - 1)


def test_rise_protocol_equals_rises_own_code():
    """Target: AUCs within 1e-5 of RISE's code. Continuous random maps (no
    ties: RISE's unstable argsort would break them its own way); step 32 on
    32 x 32 images, the shape of RISE's step 224 on 224 x 224 (one row)."""
    pytest.importorskip("scipy.ndimage", reason="RISE's code blurs with scipy")
    net = _net()
    torch.manual_seed(5)
    images = torch.randn(3, 3, 32, 32)
    maps = torch.rand(3, 32, 32, dtype=torch.float64)
    kwargs = protocol_kwargs("rise", step=32)
    result = deletion_insertion(net, images, maps, **kwargs)
    with torch.no_grad():
        for i in range(3):
            img, explanation = images[i : i + 1], maps[i].numpy()
            deletion = _rise_causal_metric(net, img, explanation, 32, "del")
            insertion = _rise_causal_metric(net, img, explanation, 32, "ins")
            assert abs(float(result.deletion_auc[i]) - deletion) < 1e-5
            assert abs(float(result.insertion_auc[i]) - insertion) < 1e-5
    # And RISE's substrate is not torchvision's: the insertion AUCs move.
    default = deletion_insertion(net, images, maps, step=32)
    assert not torch.allclose(default.insertion_auc, result.insertion_auc, atol=1e-4)
    torch.testing.assert_close(default.deletion_auc, result.deletion_auc)


def test_rise_blur_pads_with_zeros_per_channel():
    images = torch.ones(1, 3, 16, 16)
    images[:, 1] = 2.0
    blurred = RiseBlur()(images)
    kernel = rise_kernel()
    # Inside, a constant image stays constant up to the kernel's sum (1);
    # at the corner only the in-image quarter of the kernel counts.
    torch.testing.assert_close(blurred[0, :, 8, 8], torch.tensor([1.0, 2.0, 1.0]))
    torch.testing.assert_close(blurred[0, 0, 0, 0], kernel[5:, 5:].sum())
    torch.testing.assert_close(blurred[0, 1], 2 * blurred[0, 0])


# ---------------------------------------------------------------- presets


def test_presets_fill_step_and_substrates_and_explicit_values_win():
    rise = protocol_kwargs("rise")
    assert rise["step"] == 224 and rise["deletion_substrate"] is None
    assert isinstance(rise["insertion_substrate"], RiseBlur)
    groupcam = protocol_kwargs("groupcam")
    assert groupcam["step"] == 1792
    blur = groupcam["insertion_substrate"]
    assert isinstance(blur, GaussianBlur) and (blur.kernel_size, blur.sigma) == (
        51,
        50.0,
    )
    today = protocol_kwargs("captum-shallowcam", step=None)
    assert today["step"] == 224 and repr(today["insertion_substrate"]).startswith(
        "GaussianBlur(kernel_size=11, sigma=5"
    )
    assert protocol_kwargs("rise", step=7)["step"] == 7
    colour = torch.tensor(0.5)
    assert (
        protocol_kwargs("groupcam", deletion_substrate=colour)["deletion_substrate"]
        is colour
    )
    assert set(PROTOCOLS) == {"captum-shallowcam", "rise", "groupcam"}
    with pytest.raises(ValueError, match="Unknown protocol 'riise'"):
        protocol_kwargs("riise")
    with pytest.raises(TypeError, match="target"):
        protocol_kwargs("rise", target=3)


def test_the_default_protocol_is_the_metrics_default():
    net = _net()
    images, maps = torch.randn(2, 3, 12, 12), torch.rand(2, 1, 3, 3)
    default = deletion_insertion(net, images, maps, step=16)
    preset = deletion_insertion(
        net, images, maps, **protocol_kwargs("captum-shallowcam", step=16)
    )
    for a, b in zip(default, preset):
        torch.testing.assert_close(a, b)


# ------------------------------------------------- lists, progress, autocast


def test_a_list_of_maps_gives_a_list_of_results():
    net = _net()
    images = torch.randn(2, 3, 12, 12)
    maps = LayerCam(net, [net[1], net[3]]).attribute(images, target=[0, 1])
    results = deletion_insertion(net, images, maps, target=[0, 1], step=16)
    assert isinstance(results, list) and len(results) == 2
    for layer_map, result in zip(maps, results):
        alone = deletion_insertion(net, images, layer_map, target=[0, 1], step=16)
        for a, b in zip(result, alone):
            torch.testing.assert_close(a, b)


def test_show_progress_draws_one_bar_over_the_perturbed_images(capsys):
    net = _net()
    deletion_insertion(
        net, torch.randn(2, 3, 8, 8), torch.rand(2, 8, 8), step=16, show_progress=True
    )
    err = capsys.readouterr().err
    assert "deletion_insertion" in err and "16/16" in err  # 2 x 2 x (5 - 1) images


class _AutocastProbe(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.seen: list = []

    def forward(self, x: Tensor) -> Tensor:
        self.seen.append(torch.is_autocast_enabled("cpu"))
        return self.model(x)


def test_autocast_applies_to_the_metrics_forwards_only():
    probe = _AutocastProbe(_net())
    images = torch.randn(2, 3, 12, 12)
    maps = LayerCam(probe, probe.model[3]).attribute(images, target=[0, 1])
    assert probe.seen and not any(probe.seen)  # the explanation ran in float32
    assert maps.dtype == torch.float32
    probe.seen.clear()
    amp = deletion_insertion(
        probe, images, maps, target=[0, 1], step=16, autocast_dtype=torch.bfloat16
    )
    assert probe.seen and all(probe.seen)
    probe.seen.clear()
    full = deletion_insertion(probe, images, maps, target=[0, 1], step=16)
    assert not any(probe.seen)
    assert amp.deletion_curve.dtype == torch.float32
    assert not torch.equal(amp.deletion_curve, full.deletion_curve)  # bf16 rounds
    torch.testing.assert_close(amp.deletion_auc, full.deletion_auc, atol=0.02, rtol=0)
    assert not torch.is_autocast_enabled("cpu")


# ---------------------------------------------------------- the chunked scorer


def test_chunked_scorer_plays_any_game():
    """A game the metric does not play (from ones to twos, three points) on a
    2 x 2 image: point k of the game has k of the ranked pixels changed."""
    ones = torch.ones(1, 1, 2, 2)
    rank = torch.tensor([3, 0, 2, 1])  # pixel 1 first, then 3, 2, 0

    def prepare(example: int) -> ExampleGames:
        return ExampleGames(rank, (Game(ones, 2 * ones),))

    counts = torch.tensor([0, 1, 2])
    curves = torch.full((1, 1, 3), float("nan"))
    sizes = []

    def forward(batch, examples):
        sizes.append(batch.shape[0])
        return batch.flatten(1)

    score_games(
        forward, lambda out, ex: out @ torch.tensor([1.0, 10.0, 100.0, 1000.0]),
        prepare, [[(0, 3)]], counts, curves, max_batch=2,
    )  # fmt: skip
    assert curves.tolist() == [[[1111.0, 1121.0, 2121.0]]]
    assert sizes == [2, 1]
