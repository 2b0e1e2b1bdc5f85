"""ZPlusRule against an explicit, per-contribution reference.

The reference forms every contribution :math:`a_i w_{ij}` of a convolution
(with ``unfold``) and applies the rule's definition literally, including the
two fall-backs: outputs with no positive contribution take the negative ones,
outputs whose window holds only zeros take :math:`w_{ij}^2` (the flat rule).
The cases are built so that both fall-backs occur; each test asserts that they
did, so a test cannot pass by never reaching the branch it is about.
"""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import Tensor

from captum_shallowcam import ZPlusRule

EPSILON = 1e-9


def explicit_zplus(
    x: Tensor,
    weight: Tensor,
    relevance: Tensor,
    stride: int = 1,
    padding: int = 0,
    groups: int = 1,
    real: Tensor | None = None,
    conserve: bool = True,
) -> tuple[Tensor, Tensor, Tensor]:
    """Relevance on ``x`` for ``conv2d(x, weight, None, stride, padding, 1, groups)``,
    and the masks of the outputs that took the negative and the flat fall-back.
    ``real`` marks the inputs that are not padding (default: all). Without
    ``conserve`` there is no fall-back: dead outputs lose their relevance."""
    n, c, h, w = x.shape
    c_out, c_group, kh, kw = weight.shape
    x, weight, relevance = x.double(), weight.double(), relevance.double()
    cols = F.unfold(x, (kh, kw), padding=padding, stride=stride)
    real = torch.ones_like(x) if real is None else real.double().expand_as(x)
    real = F.unfold(real, (kh, kw), padding=padding, stride=stride)
    length = cols.shape[-1]
    cols = cols.view(n, groups, 1, c_group * kh * kw, length)
    real = real.view(n, groups, 1, c_group * kh * kw, length)
    w_g = weight.reshape(groups, c_out // groups, c_group * kh * kw)[
        None, :, :, :, None
    ]
    contributions = cols * w_g  # N, G, out/G, in/G*k*k, L
    positive, negative = contributions.clamp(min=0), contributions.clamp(max=0)
    z_pos, z_neg = positive.sum(3), negative.sum(3)
    r = relevance.reshape(n, groups, c_out // groups, length)
    tiny = torch.finfo(torch.float32).tiny
    per_example = (1, 2, 3)
    eps = (EPSILON * z_pos.amax(per_example, keepdim=True).clamp_min(tiny)).clamp_min(
        tiny
    )
    dead = (z_pos <= eps) & (r != 0)
    if not conserve:
        share = torch.where(
            dead[:, :, :, None], 0.0, positive / z_pos.clamp_min(eps)[:, :, :, None]
        )
        dead = torch.zeros_like(dead)  # no output takes a fall-back
    flat = dead & (z_neg >= -eps)
    by_negative = dead & ~flat
    square = w_g**2 * real
    if conserve:
        share = torch.where(
            (~dead)[:, :, :, None],
            positive / z_pos.clamp_min(eps)[:, :, :, None],
            torch.where(
                flat[:, :, :, None],
                square / square.sum(3, keepdim=True).clamp_min(1e-30),
                negative / (z_neg - eps)[:, :, :, None],
            ),
        )
    r_cols = (share * r[:, :, :, None]).sum(2).reshape(n, c * kh * kw, length)
    r_in = F.fold(r_cols, (h, w), (kh, kw), padding=padding, stride=stride)
    return r_in.float(), by_negative, flat


def _conv(stride: int, padding: int, groups: int):
    def operation(x_: Tensor, w_: Tensor, b_):  # noqa: ANN001
        return F.conv2d(x_, w_, b_, stride, padding, 1, groups)

    return operation


def _assert_rule_matches(
    x, weight, stride, padding, groups, seed
) -> tuple[Tensor, Tensor]:
    torch.manual_seed(seed)
    out_shape = F.conv2d(x, weight, None, stride, padding, 1, groups).shape
    relevance = torch.randn(out_shape)
    expected, by_negative, flat = explicit_zplus(
        x, weight, relevance, stride, padding, groups
    )
    actual = ZPlusRule().relevance(_conv(stride, padding, groups), x, weight, relevance)
    assert actual.shape == x.shape
    torch.testing.assert_close(
        actual, expected, rtol=1e-4, atol=1e-5 * float(expected.abs().max())
    )
    # Conservation: every output's relevance lands somewhere.
    torch.testing.assert_close(
        actual.flatten(1).sum(1), relevance.flatten(1).sum(1), rtol=1e-4, atol=1e-4
    )
    return by_negative, flat


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("stride, padding", [(1, 1), (2, 1), (2, 0)])
def test_depthwise_with_dead_channels_and_zero_windows(stride, padding, channels_last):
    """Non-negative inputs (after a ReLU) with zero windows, and a depthwise
    kernel with no positive weight (a BatchNorm with a negative scale folded in)."""
    torch.manual_seed(3)
    x = torch.relu(torch.randn(2, 6, 9, 9) - 0.8)  # mostly zeros: empty windows
    x[:, :, :3, :3] = 0.0
    weight = torch.randn(6, 1, 3, 3)
    weight[1] = -weight[1].abs()  # a dead channel: the negative fall-back
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    by_negative, flat = _assert_rule_matches(x, weight, stride, padding, 6, seed=4)
    assert bool(by_negative.any()) and bool(flat.any())


@pytest.mark.parametrize("channels_last", [False, True])
def test_signed_inputs_with_no_positive_contribution(channels_last):
    """Signed inputs (a linear bottleneck) through a 1x1 conv with two input
    channels: about a quarter of the outputs have no positive contribution, and
    positions where the input is zero are flat."""
    torch.manual_seed(5)
    x = torch.randn(3, 2, 6, 6)
    x[:, :, 0, :] = 0.0
    weight = torch.randn(5, 2, 1, 1)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    by_negative, flat = _assert_rule_matches(x, weight, 1, 0, 1, seed=6)
    assert bool(by_negative.any()) and bool(flat.any())


@pytest.mark.parametrize("signed", [False, True])
def test_without_conserve_dead_outputs_lose_their_relevance(signed):
    """``conserve=False``: the outputs with no positive contribution (dead
    depthwise channel, zero windows; or signed inputs through a 1x1 conv) give
    none of their relevance to the inputs, as in Captum's Alpha1_Beta0_Rule;
    every other output is redistributed as by the conserving rule."""
    torch.manual_seed(7)
    if signed:
        x = torch.randn(3, 2, 6, 6)
        x[:, :, 0, :] = 0.0
        weight, stride, padding, groups = torch.randn(5, 2, 1, 1), 1, 0, 1
    else:
        x = torch.relu(torch.randn(2, 6, 9, 9) - 0.8)
        weight, stride, padding, groups = torch.randn(6, 1, 3, 3), 2, 1, 6
        weight[1] = -weight[1].abs()
    operation = _conv(stride, padding, groups)
    relevance = torch.randn(operation(x, weight, None).shape)
    expected, _, _ = explicit_zplus(
        x, weight, relevance, stride, padding, groups, conserve=False
    )
    actual = ZPlusRule(conserve=False).relevance(operation, x, weight, relevance)
    torch.testing.assert_close(
        actual, expected, rtol=1e-4, atol=1e-5 * float(expected.abs().max())
    )
    # What is lost is exactly the relevance of the dead outputs, and it is not 0.
    conserved = ZPlusRule().relevance(operation, x, weight, relevance)
    _, by_negative, flat = explicit_zplus(x, weight, relevance, stride, padding, groups)
    dead = by_negative | flat
    lost = (relevance.double().reshape(dead.shape) * dead).flatten(1).sum(1).float()
    assert float(lost.abs().min()) > 1e-3
    torch.testing.assert_close(
        actual.flatten(1).sum(1),
        relevance.flatten(1).sum(1) - lost,
        rtol=1e-4,
        atol=1e-4,
    )
    torch.testing.assert_close(
        conserved.flatten(1).sum(1), relevance.flatten(1).sum(1), rtol=1e-4, atol=1e-4
    )


def test_signed_inputs_dense_conv_without_fallback():
    """The common case: signed inputs, every output has positive contributions."""
    torch.manual_seed(7)
    x = torch.randn(2, 8, 7, 7)
    weight = torch.randn(4, 8, 3, 3)
    by_negative, flat = _assert_rule_matches(x, weight, 1, 1, 1, seed=8)
    assert not bool(by_negative.any()) and not bool(flat.any())


def test_linear_with_signed_inputs():
    """F.linear is a 1x1 convolution on N x I x 1 x 1."""
    torch.manual_seed(9)
    x = torch.randn(4, 3)
    x[0] = 0.0
    weight = torch.randn(6, 3)
    relevance = torch.randn(4, 6)
    expected, by_negative, flat = explicit_zplus(
        x[:, :, None, None], weight[:, :, None, None], relevance[:, :, None, None]
    )
    actual = ZPlusRule().relevance(
        lambda x_, w_, b_: F.linear(x_, w_, b_), x, weight, relevance
    )
    assert bool(by_negative.any()) and bool(flat.any())
    torch.testing.assert_close(actual, expected.view(4, 3), rtol=1e-4, atol=1e-6)


def test_rule_leaves_its_arguments_unchanged():
    torch.manual_seed(10)
    x = torch.relu(torch.randn(2, 4, 6, 6))
    weight = torch.randn(4, 1, 3, 3)
    weight[0] = -weight[0].abs()
    relevance = torch.randn(2, 4, 6, 6)
    saved = [t.clone() for t in (x, weight, relevance)]
    ZPlusRule().relevance(_conv(1, 1, 4), x, weight, relevance)
    for before, after in zip(saved, (x, weight, relevance)):
        assert torch.equal(before, after)


@pytest.mark.parametrize("pad", [(0, 1, 0, 1), (2, 1, 1, 0), (1, 2)])
def test_pad_argument_equals_the_rule_on_the_padded_input_cropped(pad):
    """``pad=`` runs the operation on the zero-padded input once; padded positions
    are not inputs, so the flat rule must give them nothing (``real`` in the
    reference) and the result has the unpadded shape."""
    torch.manual_seed(11)
    x = torch.relu(torch.randn(2, 4, 8, 8) - 0.7)
    x[:, :, -3:, :] = 0.0  # empty windows at the padded border: flat outputs
    weight = torch.randn(4, 1, 3, 3)
    weight[2] = -weight[2].abs()
    padded = F.pad(x, pad)
    out_shape = F.conv2d(padded, weight, None, 2, 0, 1, 4).shape
    relevance = torch.randn(out_shape)
    real = F.pad(torch.ones(1, 4, 8, 8), pad)
    expected, by_negative, flat = explicit_zplus(
        padded, weight, relevance, 2, 0, 4, real
    )
    assert bool(by_negative.any()) and bool(flat.any())
    left, _, top, _ = (tuple(pad) + (0, 0))[:4]
    expected_unpadded = expected[:, :, top : top + 8, left : left + 8]
    # Nothing was lost on the padding.
    torch.testing.assert_close(expected_unpadded.sum(), expected.sum())
    actual = ZPlusRule().relevance(_conv(2, 0, 4), x, weight, relevance, pad=pad)
    assert actual.shape == x.shape
    torch.testing.assert_close(actual, expected_unpadded, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(actual.sum(), relevance.sum(), rtol=1e-4, atol=1e-4)


def test_pad_argument_with_channel_padding():
    """A zero pad of the channels as well (six amounts, e.g. ``F.pad`` before a
    conv that expects more channels): the padded channels are not inputs either,
    and the result has the unpadded shape."""
    torch.manual_seed(12)
    x = torch.relu(torch.randn(2, 3, 7, 7) - 0.5)
    x[:, :, :3, :3] = 0.0  # an empty window: flat outputs
    pad = (1, 1, 0, 1, 1, 0)  # width, height, then one channel in front
    weight = torch.randn(5, 4, 3, 3)
    weight[0] = -weight[0].abs()  # an output channel with no positive weight
    padded = F.pad(x, pad)
    relevance = torch.randn(F.conv2d(padded, weight).shape)
    real = F.pad(torch.ones(1, 3, 7, 7), pad)
    expected, by_negative, flat = explicit_zplus(
        padded, weight, relevance, 1, 0, 1, real
    )
    assert bool(by_negative.any()) and bool(flat.any())
    actual = ZPlusRule().relevance(_conv(1, 0, 1), x, weight, relevance, pad=pad)
    assert actual.shape == x.shape
    torch.testing.assert_close(actual, expected[:, 1:, :7, 1:8], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(actual.sum(), relevance.sum(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("conserve", [True, False])
@pytest.mark.parametrize("signed", [False, True])
def test_linear_on_feature_maps_equals_the_pointwise_conv_rule(signed, conserve):
    """F.linear on N x H x W x C (ConvNeXt's MLP) or N x L x C (tokens) is a
    1x1 conv on the features moved to dim 1; the rule must give the conv's
    result, fall-backs included (a zero pixel: flat; a pixel whose
    contributions to output 0 are all negative)."""
    torch.manual_seed(21)
    x = torch.randn(2, 5, 6, 8) if signed else torch.rand(2, 5, 6, 8)
    weight = torch.randn(7, 8)
    x[1, 2, 3] = 0.0
    x[0, 4, 1] = -torch.sign(weight[0]) * x[0, 4, 1].abs()
    if not signed:
        weight[0] = -weight[0].abs()  # no positive contribution anywhere
    relevance = torch.randn(2, 5, 6, 7)
    rule = ZPlusRule(conserve=conserve)
    as_conv = rule.relevance(
        _conv(1, 0, 1),
        x.permute(0, 3, 1, 2),
        weight[:, :, None, None],
        relevance.permute(0, 3, 1, 2),
    ).permute(0, 2, 3, 1)
    expected, by_negative, flat = explicit_zplus(
        x.permute(0, 3, 1, 2),
        weight[:, :, None, None],
        relevance.permute(0, 3, 1, 2),
        conserve=conserve,
    )
    torch.testing.assert_close(
        as_conv, expected.permute(0, 2, 3, 1), rtol=1e-4, atol=1e-5
    )
    if conserve:
        assert bool(by_negative.any()) and bool(flat.any())

    def linear(x_: Tensor, w_: Tensor, b_) -> Tensor:  # noqa: ANN001
        return F.linear(x_, w_, b_)

    on_maps = rule.relevance(linear, x, weight, relevance)
    torch.testing.assert_close(on_maps, as_conv, rtol=1e-5, atol=1e-6)
    on_tokens = rule.relevance(linear, x.flatten(1, 2), weight, relevance.flatten(1, 2))
    torch.testing.assert_close(on_tokens, as_conv.flatten(1, 2), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("groups", [1, 2])
def test_few_dead_pixels_of_a_pointwise_conv_take_the_sparse_fallback(
    groups, monkeypatch
):
    """A 1x1 conv with a handful of dead outputs (signed inputs, a linear
    bottleneck) handles them pixel by pixel; the result must equal the
    reference, and the pixel-by-pixel path must be the one taken."""
    from captum_shallowcam.attr import _zplus_kernels as rules

    calls = []
    original = rules._FewDeadPixels.add_relevance

    def spy(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        calls.append(self.pixels[0].numel())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(rules._FewDeadPixels, "add_relevance", spy)
    torch.manual_seed(12)
    x = torch.randn(2, 32, 16, 16)
    weight = torch.randn(6, 32 // groups, 1, 1)
    # Pixel (0, 3, 4): every contribution to output channel 0 is <= 0.
    w0 = weight[0, :, 0, 0]
    x[0, : 32 // groups, 3, 4] = -torch.sign(w0) * x[0, : 32 // groups, 3, 4].abs()
    x[1, :, 5, 6] = 0.0  # an all-zero pixel: flat for every output channel
    by_negative, flat = _assert_rule_matches(x, weight, 1, 0, groups, seed=13)
    assert bool(by_negative.any()) and bool(flat.any())
    assert calls and calls[0] >= 2


@pytest.mark.parametrize("kernel", [1, 3])
def test_conv1d_and_conv3d_equal_the_conv2d_rule_on_a_reshaped_input(kernel):
    """The rule is written for any spatial rank: a conv1d (N x C x L) is a conv2d
    on N x C x 1 x L, a conv3d with a depth-1 kernel on one slice is the same
    conv2d. Signed inputs with a few dead outputs (and, for 1x1 kernels, the
    pixel-by-pixel path) are included."""
    torch.manual_seed(14)
    x = torch.randn(2, 12, 1, 20)
    x[1, :, :, 3] = 0.0
    weight = torch.randn(5, 12, 1, kernel)
    relevance = torch.randn(2, 5, 1, 20 - kernel + 1)
    rule = ZPlusRule()
    expected = rule.relevance(_conv(1, 0, 1), x, weight, relevance)
    in_1d = rule.relevance(
        lambda x_, w_, b_: F.conv1d(x_, w_, b_),
        x[:, :, 0],
        weight[:, :, 0],
        relevance[:, :, 0],
    )
    torch.testing.assert_close(in_1d, expected[:, :, 0], rtol=1e-5, atol=1e-6)
    in_3d = rule.relevance(
        lambda x_, w_, b_: F.conv3d(x_, w_, b_),
        x[:, :, None],
        weight[:, :, None],
        relevance[:, :, None],
    )
    torch.testing.assert_close(in_3d, expected[:, :, None], rtol=1e-5, atol=1e-6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    batch=st.integers(1, 3),
    groups=st.sampled_from([1, 2, "depthwise"]),
    per_group=st.integers(1, 4),
    out_per_group=st.integers(1, 3),
    kernel=st.integers(1, 3),
    stride=st.integers(1, 2),
    padding=st.integers(0, 1),
    size=st.integers(3, 7),
    signed=st.booleans(),
    sparsity=st.floats(0.0, 1.5),
    dead_channel=st.booleans(),
    conserve=st.booleans(),
)
def test_rule_equals_the_explicit_reference_on_random_convolutions(
    seed, batch, groups, per_group, out_per_group, kernel, stride, padding, size,
    signed, sparsity, dead_channel, conserve,
):  # fmt: skip
    """Every path of the rule (signed or not, dead outputs dense or pixel by
    pixel, flat outputs, grouped and depthwise convs, strides, padding, with or
    without ``conserve``) against
    the written-out contributions, on generated convolutions."""
    if groups == "depthwise":
        groups, out_per_group = per_group, 1
        per_group = 1
    channels = groups * per_group
    if kernel > size + 2 * padding:
        return
    torch.manual_seed(seed)
    x = torch.randn(batch, channels, size, size)
    x = x - sparsity if signed else torch.relu(x - sparsity)
    weight = torch.randn(groups * out_per_group, per_group, kernel, kernel)
    if dead_channel:
        weight[0] = -weight[0].abs()
    out_shape = F.conv2d(x, weight, None, stride, padding, 1, groups).shape
    relevance = torch.randn(out_shape)
    expected, _, _ = explicit_zplus(
        x, weight, relevance, stride, padding, groups, conserve=conserve
    )
    rule = ZPlusRule(conserve=conserve)
    actual = rule.relevance(_conv(stride, padding, groups), x, weight, relevance)
    scale = float(expected.abs().max()) + 1e-12
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5 * scale)
