"""The plotting helpers: upsampled, normalised maps with colour bars and titles."""

import re

import numpy as np
import pytest
import torch

from captum_shallowcam.visualization import (
    layer_map_figure,
    upsample_and_normalize,
    visualize_layer_attr,
    visualize_layer_attr_multiple,
)


def test_upsample_and_normalize_matches_interpolate_over_its_peak():
    layer_map = torch.tensor(
        [[[0.0, 2e-6], [1e-6, 4e-6]]]
    )  # tiny, as relevance maps are
    attr = upsample_and_normalize(layer_map, (4, 4))
    expected = (
        torch.nn.functional.interpolate(
            layer_map[None], (4, 4), mode="bilinear", align_corners=False
        )[0, 0]
        / 4e-6
    )
    assert attr.shape == (4, 4, 1)
    np.testing.assert_allclose(attr[..., 0], expected.numpy(), rtol=1e-6)
    assert not upsample_and_normalize(torch.zeros(1, 2, 2), (4, 4)).any()


def test_visualize_layer_attr_titles_and_colour_bar():
    image = torch.rand(3, 32, 32)
    fig, ax = visualize_layer_attr(
        torch.rand(1, 8, 8), image, "LayerCam", "layer1", score=41.27
    )
    assert ax.get_title() == "LayerCam, layer1 (8 x 8)\noverall 41.3"
    assert len(fig.axes) == 2  # the map and its colour bar
    _, ax = visualize_layer_attr(torch.zeros(1, 8, 8), image, "LayerCam", "layer1")
    assert ax.get_title() == "LayerCam, layer1 (8 x 8) (all zero)"


def test_multiple_and_grid_show_every_score():
    images = torch.rand(2, 3, 32, 32)
    maps = {
        "a": [torch.rand(2, 1, 16, 16), torch.rand(2, 1, 4, 4)],
        "b": [torch.rand(2, 1, 16, 16), torch.rand(2, 1, 4, 4)],
    }
    scores = {"a": [[1.0, 2.0], [3.0, 4.0]], "b": [[5.0, 6.0], [7.0, 8.0]]}
    fig = layer_map_figure(
        images, maps, ["s1", "s2"], row_labels=["x", "y"], scores=scores, title="t"
    )
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert "s1 (16 x 16)\noverall 1.0" in titles and "s2 (4 x 4)\noverall 3.0" in titles
    for value in ("2.0", "4.0", "5.0", "6.0", "7.0", "8.0"):
        assert f"overall {value}" in titles
    assert fig.get_figwidth() <= 16  # fits a screen's width
    fig, axes = visualize_layer_attr_multiple(
        [m[0] for m in maps["a"]], images[0], ["s1", "s2"], "a", scores=[1.5, 2.5]
    )
    assert [ax.get_title() for ax in axes] == [
        "image",
        "a, s1 (16 x 16)\noverall 1.5",
        "a, s2 (4 x 4)\noverall 2.5",
    ]


@pytest.mark.parametrize(
    "layer_map, image, error, message",
    [
        (torch.rand(2, 1, 4, 4), torch.rand(3, 8, 8), ValueError, "layer_map has shape (2, 1, 4, 4); pass one example's map"),
        (torch.rand(1, 4, 4), torch.rand(2, 3, 8, 8), ValueError, "original_image has shape (2, 3, 8, 8); pass one image"),
        (torch.rand(1, 4, 4), np.zeros((8, 8, 3)), TypeError, "original_image must be a torch.Tensor, got ndarray (for an H x W x C array"),
        (torch.full((1, 4, 4), float("nan")), torch.rand(3, 8, 8), ValueError, "layer_map holds NaN or inf values"),
    ],
)  # fmt: skip
def test_visualize_layer_attr_refuses_what_it_cannot_draw(
    layer_map, image, error, message
):
    with pytest.raises(error, match=re.escape(message)):
        visualize_layer_attr(layer_map, image)
