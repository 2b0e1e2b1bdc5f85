"""Figures of layer maps, drawn with :mod:`captum.attr.visualization`.

Nothing here draws a heat map itself: maps are upsampled with
:meth:`captum.attr.LayerAttribution.interpolate`, divided by their largest
absolute value, and handed, as numpy HWC arrays with the un-normalised image, to
:func:`captum.attr.visualization.visualize_image_attr`.

* :func:`visualize_layer_attr`: one layer map over its image, with a colour bar
  and a title naming the method, the layer, its resolution and, when given, the
  deletion/insertion score;
* :func:`visualize_layer_attr_multiple`: several layer maps of one image side by
  side (the list a multi-layer ``attribute`` returns);
* :func:`layer_map_figure`: a grid, one row per image and method, one column per
  layer (what ``python -m captum_shallowcam demo`` and ``explain`` draw).
"""

import textwrap
from collections.abc import Sequence

import numpy as np
import torch
from captum.attr import LayerAttribution
from captum.attr import visualization as viz
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor


def to_hwc(tensor: Tensor) -> np.ndarray:
    """A C x H x W tensor as the H x W x C numpy array Captum's visualization wants."""
    return tensor.detach().cpu().permute(1, 2, 0).numpy()


def upsample_and_normalize(layer_map: Tensor, size: tuple[int, int]) -> np.ndarray:
    r"""A layer map brought to the image's size and to [-1, 1], as Captum wants it.

    Args:
        layer_map (Tensor): One map, 1 x h x w (or h x w).
        size (tuple[int, int]): The image's height and width.

    Returns:
        numpy.ndarray: H x W x 1, bilinearly upsampled
        (:meth:`~captum.attr.LayerAttribution.interpolate`) and divided by its
        largest absolute value; all zeros stay zeros. Raw maps can be tiny
        (relevance sums to 1/C), and Captum warns when it normalises by values
        near zero.
    """
    layer_map = layer_map.detach().float().cpu()
    if layer_map.dim() == 2:
        layer_map = layer_map[None]
    upsampled = LayerAttribution.interpolate(layer_map[None], tuple(size), "bilinear")[
        0
    ]
    peak = float(upsampled.abs().max())
    if peak > 0.0:
        upsampled = upsampled / peak
    return to_hwc(upsampled)


def _check_map_and_image(layer_map: Tensor, original_image: Tensor) -> None:
    """One map (1 x h x w or h x w) and one image (C x H x W) as tensors, finite."""
    for name, value in (("layer_map", layer_map), ("original_image", original_image)):
        if not isinstance(value, Tensor):
            hint = (
                " (for an H x W x C array: torch.from_numpy(array).permute(2, 0, 1))"
                if isinstance(value, np.ndarray)
                else ""
            )
            raise TypeError(
                f"{name} must be a torch.Tensor, got {type(value).__name__}{hint}."
            )
    shape = tuple(layer_map.shape)
    if not (layer_map.dim() == 2 or (layer_map.dim() == 3 and shape[0] == 1)):
        raise ValueError(
            f"layer_map has shape {shape}; pass one example's map, 1 x h x w (e.g. "
            "maps[i] of a batch N x 1 x h x w)."
        )
    image_shape = tuple(original_image.shape)
    if original_image.dim() != 3 or image_shape[0] not in (1, 3):
        raise ValueError(
            f"original_image has shape {image_shape}; pass one image, 3 x H x W (e.g. "
            "images[i] of a batch)."
        )
    if not torch.isfinite(layer_map).all():
        raise ValueError(
            "layer_map holds NaN or inf values, which cannot be drawn; fix the map "
            "(e.g. torch.nan_to_num)."
        )


def layer_title(
    method_name: str | None = None,
    layer_name: str | None = None,
    resolution: tuple[int, int] | None = None,
    score: float | None = None,
) -> str:
    """``"LayerCam, stage2 (56 x 56)\\noverall 41.3"``: the parts that are given."""
    head = ", ".join(part for part in (method_name, layer_name) if part)
    if resolution is not None:
        head = f"{head} ({resolution[0]} x {resolution[1]})".strip()
    lines = [head] if head else []
    if score is not None:
        lines.append(f"overall {score:.1f}")
    return "\n".join(lines)


def visualize_layer_attr(
    layer_map: Tensor,
    original_image: Tensor,
    method_name: str | None = None,
    layer_name: str | None = None,
    score: float | None = None,
    plt_fig_axis: tuple[Figure, Axes] | None = None,
    sign: str = "positive",
    outlier_perc: float = 2,
    alpha_overlay: float = 0.55,
    show_colorbar: bool = True,
    title: str | None = None,
    fontsize: float = 9,
    fig_size: tuple[float, float] = (4.5, 5),
    use_pyplot: bool = False,
) -> tuple[Figure, Axes]:
    r"""Draws one layer map over its image, with a colour bar and a title.

    The map is upsampled to the image's size and divided by its largest absolute
    value (:func:`upsample_and_normalize`), then drawn by
    :func:`captum.attr.visualization.visualize_image_attr` as a blended heat map.
    A map that is zero everywhere, which Captum cannot normalise, shows the bare
    image and says so in the title.

    Args:
        layer_map (Tensor): 1 x h x w (one example of an ``attribute`` result).
        original_image (Tensor): 3 x H x W image in [0, 1] (un-normalised).
        method_name (str, optional): For the title, e.g. ``"LayerShallowCam"``.
        layer_name (str, optional): For the title, e.g. ``"stage2"``.
        score (float, optional): The overall deletion/insertion score of this
                    map, shown in the title. Default: None (not shown)
        plt_fig_axis (tuple, optional): ``(figure, axis)`` to draw into.
                    Default: None (a new figure of ``fig_size``)
        sign (str, optional): Captum's ``sign``; ``"all"`` for signed maps
                    (``relu_attributions=False``). Default: ``"positive"``
        outlier_perc (float, optional): Captum's ``outlier_perc``. Default: 2
        alpha_overlay (float, optional): Opacity of the heat map. Default: 0.55
        show_colorbar (bool, optional): Draw a colour bar under the map.
                    Default: True
        title (str, optional): Replaces the title built from the method, layer,
                    resolution and score. Default: None
        fontsize (float, optional): Title font size. Default: 9
        fig_size (tuple, optional): Inches, for a new figure. Default: (4.5, 5)
        use_pyplot (bool, optional): As in Captum: draw with pyplot and show.
                    Default: False (a bare :class:`~matplotlib.figure.Figure`)

    Returns:
        (matplotlib.figure.Figure, matplotlib.axes.Axes): The figure and the axis
        of the map.

    Examples::

        >>> maps = LayerShallowCam(model, model.layer1).attribute(x, target=3)
        >>> fig, ax = visualize_layer_attr(
        ...     maps[0], images[0], "LayerShallowCam", "layer1", score=41.3
        ... )
        >>> fig.savefig("layer1.png")
    """
    _check_map_and_image(layer_map, original_image)
    if plt_fig_axis is None:
        fig = Figure(figsize=fig_size)
        plt_fig_axis = (fig, fig.subplots())
    fig, ax = plt_fig_axis
    image = to_hwc(original_image.detach().float().clamp(0, 1))
    attr = upsample_and_normalize(layer_map, original_image.shape[-2:])
    if title is None:
        title = layer_title(method_name, layer_name, tuple(layer_map.shape[-2:]), score)
    if not np.any(attr):
        # Captum normalises even to show the image alone; give it ones.
        viz.visualize_image_attr(
            np.ones_like(attr), image, method="original_image",
            plt_fig_axis=plt_fig_axis, show_colorbar=show_colorbar, use_pyplot=False,
        )  # fmt: skip
        title = f"{title} (all zero)" if title else "all zero"
    else:
        viz.visualize_image_attr(
            attr, image, method="blended_heat_map", sign=sign, outlier_perc=outlier_perc,
            alpha_overlay=alpha_overlay, plt_fig_axis=plt_fig_axis,
            show_colorbar=show_colorbar, use_pyplot=False,
        )  # fmt: skip
        if show_colorbar:
            colorbar_axis = fig.axes[-1]
            colorbar_axis.tick_params(labelsize=fontsize - 2, length=2, pad=1)
    ax.set_title(title, fontsize=fontsize)
    if use_pyplot:
        import matplotlib.pyplot as plt

        plt.show()
    return fig, ax


def visualize_layer_attr_multiple(
    layer_maps: Sequence[Tensor],
    original_image: Tensor,
    layer_names: Sequence[str],
    method_name: str | None = None,
    scores: Sequence[float] | None = None,
    show_original: bool = True,
    cell_size: float = 3.0,
    **kwargs: object,
) -> tuple[Figure, np.ndarray]:
    r"""Several layer maps of one image side by side, the image first.

    Args:
        layer_maps (list[Tensor]): One 1 x h x w map per layer (e.g.
                    ``[m[i] for m in maps]`` from a multi-layer ``attribute``).
        original_image (Tensor): 3 x H x W image in [0, 1].
        layer_names (list[str]): One name per map.
        method_name (str, optional): For the titles.
        scores (list[float], optional): One overall score per map.
        show_original (bool, optional): Show the image in a first panel.
                    Default: True
        cell_size (float, optional): Inches per panel. Default: 3.0
        **kwargs: Passed to :func:`visualize_layer_attr`.

    Returns:
        (matplotlib.figure.Figure, numpy.ndarray of Axes)

    Examples::

        >>> maps = LayerCam(model, [model.layer1, model.layer2]).attribute(x)
        >>> fig, axes = visualize_layer_attr_multiple(
        ...     [m[0] for m in maps], images[0], ["layer1", "layer2"], "LayerCam"
        ... )
    """
    n_cols = len(layer_maps) + int(show_original)
    fig = Figure(figsize=(cell_size * n_cols, cell_size * 1.2))
    axes = fig.subplots(1, n_cols, squeeze=False)[0]
    if show_original:
        _show_image(
            fig,
            axes[0],
            original_image,
            "image",
            bool(kwargs.get("show_colorbar", True)),
        )
    for j, (layer_map, name) in enumerate(zip(layer_maps, layer_names)):
        score = None if scores is None else float(scores[j])
        visualize_layer_attr(
            layer_map, original_image, method_name, name, score,
            plt_fig_axis=(fig, axes[j + int(show_original)]), **kwargs,  # type: ignore[arg-type]
        )  # fmt: skip
    fig.tight_layout()
    return fig, axes


def _show_image(
    fig: Figure, ax: Axes, image: Tensor, title: str, colorbar_space: bool
) -> None:
    # Captum normalises the attribution even to show the image alone; an empty
    # colour-bar axis keeps the image aligned with the maps beside it.
    original = to_hwc(image.detach().float().clamp(0, 1))
    viz.visualize_image_attr(
        np.ones(original.shape[:2] + (1,)), original, method="original_image",
        plt_fig_axis=(fig, ax), show_colorbar=colorbar_space, use_pyplot=False,
    )  # fmt: skip
    ax.set_title(title, fontsize=9)


def layer_map_figure(
    images: Tensor,
    maps: dict[str, Sequence[Tensor]],
    layer_names: Sequence[str],
    row_labels: Sequence[str] | None = None,
    cell_size: float | None = None,
    scores: dict[str, Sequence[Sequence[float]]] | None = None,
    title: str | None = None,
) -> Figure:
    r"""One figure: for each image, one row per method; one column per layer.

    Every panel has a colour bar; the column titles name the layer and its
    resolution, the row labels the image and the method, and with ``scores``
    each panel shows its overall deletion/insertion score.

    Args:
        images (Tensor): N x 3 x H x W images in [0, 1] (un-normalised).
        maps (dict[str, list[Tensor]]): Method name -> one N x 1 x h x w map per
                    layer, in the order of ``layer_names``.
        layer_names (list[str]): Column titles.
        row_labels (list[str], optional): One label per image. Default: index.
        cell_size (float, optional): Inches per panel. Default: None (between
                    1.8 and 3.2, so that the figure is about 15 inches wide)
        scores (dict[str, list[list[float]]], optional): Method name -> per
                    layer, one overall score per image. Default: None
        title (str, optional): A title over the figure. Default: None

    Returns:
        matplotlib.figure.Figure: The figure; the first column shows the image.

    Examples::

        >>> fig = layer_map_figure(images, {"LayerCam": cam_maps}, ["stage1", "stage2"])
        >>> fig.savefig("maps.png")
    """
    n_images = images.shape[0]
    methods = list(maps)
    n_rows, n_cols = n_images * len(methods), len(layer_names) + 1
    if cell_size is None:
        cell_size = min(3.2, max(1.8, 15.0 / n_cols))
    fontsize = 8 if cell_size < 2.5 else 9
    # Sizes in inches. Captum appends each colour bar under its panel, which
    # matplotlib's layout engines do not see, so the grid is laid out by hand:
    # square panels, a gap under each for its colour bar and the next title,
    # room on the left for the row labels and on top for the title.
    labels = [
        row_labels[i] if row_labels is not None else str(i) for i in range(n_images)
    ]
    label_lines = 1 + max(len(label.splitlines()) for label in labels)
    left, right, wspace, bottom = 0.15 + 0.16 * label_lines, 0.1, 0.1, 0.45
    # Without scores only the first row has titles: the gap holds a colour bar.
    gap = (0.75 if fontsize < 9 else 0.95) if scores is not None else 0.5
    width = cell_size * n_cols + left + right
    panel = (width - left - right) / (n_cols + wspace * (n_cols - 1))
    if title:
        title = textwrap.fill(title, width=int(width * 72 / (0.6 * (fontsize + 1))))
    top = 0.65 + (0.2 * (title.count("\n") + 1) if title else 0.0)
    height = n_rows * panel + (n_rows - 1) * gap + top + bottom
    fig = Figure(figsize=(width, height))
    axes = fig.subplots(
        n_rows, n_cols, squeeze=False,
        gridspec_kw=dict(
            left=left / width, right=1 - right / width, top=1 - top / height,
            bottom=bottom / height, hspace=gap / panel, wspace=wspace,
        ),
    )  # fmt: skip
    for i, label in enumerate(labels):
        for m, method in enumerate(methods):
            row = i * len(methods) + m
            _show_image(fig, axes[row, 0], images[i], "", colorbar_space=True)
            axes[row, 0].set_ylabel(f"{label}\n{method}", fontsize=fontsize)
            axes[row, 0].yaxis.set_visible(True)
            axes[row, 0].set_yticks([])
            for j, layer_map in enumerate(maps[method]):
                score = None if scores is None else float(scores[method][j][i])
                head = layer_title(None, layer_names[j], tuple(layer_map.shape[-2:]))
                # The layer heads the column; every panel names its score.
                panel_title = head if row == 0 else ""
                if score is not None:
                    panel_title = f"{panel_title}\noverall {score:.1f}".strip()
                visualize_layer_attr(
                    layer_map[i], images[i], plt_fig_axis=(fig, axes[row, j + 1]),
                    title=panel_title, fontsize=fontsize,
                )  # fmt: skip
    axes[0, 0].set_title("image", fontsize=fontsize)
    if title:
        fig.suptitle(title, fontsize=fontsize + 1, y=1 - 0.15 / height, va="top")
    return fig
