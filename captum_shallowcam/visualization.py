"""Figures of layer maps, drawn with :mod:`captum.attr.visualization`.

Nothing here draws a heat map itself: maps are upsampled with
:meth:`captum.attr.LayerAttribution.interpolate` and handed, as numpy HWC arrays
with the un-normalised image, to :func:`captum.attr.visualization.visualize_image_attr`.
"""

from typing import Dict, Optional, Sequence

import numpy as np
from captum.attr import LayerAttribution
from captum.attr import visualization as viz
from matplotlib.figure import Figure
from torch import Tensor


def to_hwc(tensor: Tensor) -> np.ndarray:
    """A C x H x W tensor as the H x W x C numpy array Captum's visualization wants."""
    return tensor.detach().cpu().permute(1, 2, 0).numpy()


def layer_map_figure(
    images: Tensor,
    maps: Dict[str, Sequence[Tensor]],
    layer_names: Sequence[str],
    row_labels: Optional[Sequence[str]] = None,
    cell_size: float = 1.6,
) -> Figure:
    r"""One figure: for each image, one row per method; one column per layer.

    Args:
        images (Tensor): N x 3 x H x W images in [0, 1] (un-normalised).
        maps (dict[str, list[Tensor]]): Method name -> one N x 1 x h x w map per
                    layer, in the order of ``layer_names``.
        layer_names (list[str]): Column titles.
        row_labels (list[str], optional): One label per image. Default: index.
        cell_size (float, optional): Inches per panel. Default: 1.6

    Returns:
        matplotlib.figure.Figure: The figure; the first column shows the image.

    Examples::

        >>> fig = layer_map_figure(images, {"LayerCam": cam_maps}, ["stage1", "stage2"])
        >>> fig.savefig("maps.png")
    """
    n_images, _, height, width = images.shape
    methods = list(maps)
    n_rows, n_cols = n_images * len(methods), len(layer_names) + 1
    fig = Figure(figsize=(cell_size * n_cols, cell_size * n_rows))
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for i in range(n_images):
        original = to_hwc(images[i].clamp(0, 1))
        label = row_labels[i] if row_labels is not None else str(i)
        for m, method in enumerate(methods):
            row = i * len(methods) + m
            # Captum normalises the attribution even to show the image alone.
            blank = np.ones(original.shape[:2] + (1,))
            viz.visualize_image_attr(
                blank, original, method="original_image", plt_fig_axis=(fig, axes[row, 0]),
                use_pyplot=False,
            )
            axes[row, 0].set_ylabel(f"{label}\n{method}", fontsize=7)
            axes[row, 0].yaxis.set_visible(True)
            axes[row, 0].set_yticks([])
            for j, layer_map in enumerate(maps[method]):
                upsampled = LayerAttribution.interpolate(
                    layer_map[i : i + 1], (height, width), "bilinear"
                )[0]
                attr = to_hwc(upsampled)
                peak = float(np.abs(attr).max())
                ax = axes[row, j + 1]
                if peak == 0.0:
                    # Captum cannot normalise an all-zero map; show the image.
                    viz.visualize_image_attr(
                        blank, original, method="original_image",
                        plt_fig_axis=(fig, ax), use_pyplot=False,
                    )
                else:
                    # Maps can be tiny (relevance sums to 1/C); Captum warns when
                    # normalising by near-zero values, so hand it [0, 1] maps.
                    viz.visualize_image_attr(
                        attr / peak, original, method="blended_heat_map", sign="positive",
                        plt_fig_axis=(fig, ax), use_pyplot=False, alpha_overlay=0.55,
                    )
                if row == 0:
                    ax.set_title(layer_names[j], fontsize=8)
    axes[0, 0].set_title("image", fontsize=8)
    fig.tight_layout()
    return fig
