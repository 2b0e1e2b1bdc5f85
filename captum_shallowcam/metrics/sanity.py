"""Sanity checks for attribution maps: model randomization and class sensitivity.

The model-parameter randomization test of Adebayo et al., "Sanity Checks for
Saliency Maps", NeurIPS 2018 (https://arxiv.org/abs/1810.03292): a map that
explains the model must change when the model's learned weights are replaced
by random ones. The class-sensitivity check asks the same of the explained
class: a map for the predicted class should differ from one for another class.

Both take an ``explain(model, inputs, target)`` function, so that any method
can be checked on the randomized copies of the model. The rank correlations
come from :func:`scipy.stats.spearmanr` and SSIM from
:func:`skimage.metrics.structural_similarity`, imported on first use (the
``sanity`` extra installs both).
"""

import copy
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import numpy as np
import torch
from captum.log import log_usage
from torch import Tensor, nn

from captum_shallowcam._captum_compat import TargetType, progress
from captum_shallowcam._model_state import buffers_preserved
from captum_shallowcam._validation import check_image_batch, target_indices

__all__ = [
    "ModelRandomizationResult",
    "class_sensitivity",
    "model_randomization",
    "randomization_steps",
]

#: ``explain(model, inputs, target) -> N x 1 x h x w maps`` (or a list of them).
ExplainFunc = Callable[[nn.Module, Tensor, Tensor], Tensor | Sequence[Tensor]]

_ORDERS = ("cascading", "independent")
_OTHER_CLASSES = ("second", "last")
_INSTALL = "pip install 'captum-shallowcam[sanity]'"
#: SSIM as in Adebayo et al.'s code: maps scaled to [0, 1], Gaussian window of
#: sigma 1.5 (11 taps, Wang et al. 2004), narrower on maps under 11 pixels.
_SSIM_SIGMA = 1.5
_SSIM_MAX_WINDOW = 11


class ModelRandomizationResult(NamedTuple):
    r"""Result of :func:`model_randomization`.

    Fields (K randomization steps, N examples):

        modules (list of str): The K steps in randomization order: a module's
                qualified name (as in ``model.named_modules()``), or the names
                of a group joined by ``"+"``.
        spearman (Tensor): K x N Spearman rank correlations between the map of
                the trained model and the map after step ``k``.
        spearman_abs (Tensor): K x N rank correlations of the absolute values
                of the same maps.
        ssim (Tensor): K x N structural similarities of the same maps, each
                scaled to [0, 1].
    """

    modules: list[str]
    spearman: Tensor
    spearman_abs: Tensor
    ssim: Tensor


@log_usage()
def model_randomization(
    model: nn.Module,
    explain: ExplainFunc,
    inputs: Tensor,
    target: TargetType = None,
    *,
    order: str = "cascading",
    modules: Sequence[str | Sequence[str]] | None = None,
    seed: int = 0,
    show_progress: bool = False,
) -> ModelRandomizationResult | list[ModelRandomizationResult]:
    r"""
    Model-parameter randomization test of Adebayo et al., "Sanity Checks for
    Saliency Maps", NeurIPS 2018: https://arxiv.org/abs/1810.03292

    The learned parameters of the model are replaced by random ones, module by
    module, and the map of each example is compared with the map that the
    trained model gives. A method whose maps stay the same does not explain
    the model: it may be an edge detector of the input.

    With ``order="cascading"`` the modules are randomized from the output
    down, cumulatively: step ``k`` explains the model whose last ``k + 1``
    modules are random. With ``order="independent"`` step ``k`` explains a
    fresh copy of the trained model in which only module ``k`` is random.

    The modules randomized by default are those with parameters of their own
    (``module.parameters(recurse=False)``) and a ``reset_parameters()``
    method (convolutions, linear layers, normalisation layers), in the reverse
    of the order in which one forward pass of the trained model calls them;
    modules that the forward pass does not call are left out, and so are
    modules with parameters but no ``reset_parameters()`` (a warning names
    them). Randomizing a module calls its own ``reset_parameters()``, the
    initialisation that PyTorch gives a new module (a BatchNorm's also resets
    its running statistics to mean 0 and variance 1), under
    ``torch.manual_seed(seed + k)`` at step ``k``. Module ``k`` therefore gets
    the same random weights in both orders, results are reproducible, and the
    global random state is put back afterwards.

    Every step works on a ``copy.deepcopy`` of `model`, which is never run
    nor changed (its parameters, buffers, mode and hooks stay as they were).

    For example ``n`` and step ``k``, with :math:`M_n` the trained model's map
    and :math:`M^{(k)}_n` the map after step ``k``, both flattened, at the
    resolution that `explain` returns (no upsampling):

    .. math::

        \text{spearman}_{k,n} = \operatorname{corr}\big(
        \operatorname{rank}(M_n),\, \operatorname{rank}(M^{(k)}_n)\big),
        \qquad
        \text{spearman\_abs}_{k,n} = \operatorname{corr}\big(
        \operatorname{rank}|M_n|,\, \operatorname{rank}|M^{(k)}_n|\big),

    Pearson correlations of ranks (ties get their average rank:
    :func:`scipy.stats.spearmanr`), and :math:`\text{ssim}_{k,n}` the
    structural similarity (:func:`skimage.metrics.structural_similarity`,
    Gaussian window of sigma 1.5, at most 11 pixels wide and no wider than
    the map) of the two maps, each scaled to [0, 1] by its minimum and
    maximum, as in the paper's code. A map that passes the test has values
    that fall towards 0 as the cascade reaches the input.

    A constant map has no ranks to correlate and no range to scale: where
    either map of a comparison is constant (or holds NaN or inf), its three
    values are NaN and a ``RuntimeWarning`` says how many there are. SSIM is
    NaN for maps smaller than 3 x 3 (with a warning).

    Args:

        model (torch.nn.Module): The trained model; it maps `inputs` to N x C
                class scores.
        explain (Callable): ``explain(model, inputs, target)`` returns the
                maps of `inputs` for the classes `target` (a long tensor of N
                class indices) on the model it is given (the trained copy or
                a randomized one): an N x 1 x h x w tensor, or a list of them
                (for example one per layer), in which case a list of results
                is returned, one per map. It is called with gradients
                enabled, e.g. ``lambda m, x, t: LayerCam(m, m.layer4)
                .attribute(x, target=t)``.
        inputs (Tensor): N x C x H x W batch of images.
        target (int, list, or Tensor, optional): The class explained for each
                example, at every step. If None, the class that the trained
                model predicts; it stays fixed for all steps (the randomized
                models' predictions are not used).

                Default: None

        order (str, optional): ``"cascading"`` or ``"independent"``.

                Default: ``"cascading"``

        modules (list, optional): The steps, in randomization order, instead
                of the default one module per step: each entry is a module
                name (``model.named_modules()``) or a list of names randomized
                together in one step; every module with its own parameters and
                ``reset_parameters()`` inside a named module is randomized.
                For example one step per block of a network.

                Default: None

        seed (int, optional): Step ``k`` randomizes under
                ``torch.manual_seed(seed + k)``.

                Default: 0

        show_progress (bool, optional): Shows a progress bar over the steps.

                Default: False

    Returns:

        result (ModelRandomizationResult or list): A named tuple (a list of
            them when `explain` returns a list) with fields

            - **modules** (*list of str*): the K steps, in randomization order.
            - **spearman** (*Tensor*): K x N rank correlations.
            - **spearman_abs** (*Tensor*): K x N rank correlations of absolute
              values.
            - **ssim** (*Tensor*): K x N structural similarities.

            Float64 tensors on the CPU.

    Raises:

        ImportError: if scipy or scikit-image is missing.
        TypeError: if `model` is not an ``nn.Module``.
        ValueError: if the model has nothing to randomize, `order` or a name
                in `modules` is unknown, a target is out of range, or
                `explain` returns maps of the wrong shape; the message names
                the problem and how to fix it.

    Examples::

        >>> net = ImageClassifier().eval()
        >>> def explain(model, x, target):
        ...     return LayerCam(model, model.features[-1]).attribute(x, target=target)
        >>> result = model_randomization(net, explain, torch.randn(4, 3, 224, 224))
        >>> result.modules        # output first: ['classifier.6', ..., 'features.0']
        >>> result.spearman.mean(dim=1)   # one mean correlation per step
    """
    spearmanr, structural_similarity = _similarity_functions(ssim=True)
    _check_model(model)
    check_image_batch(inputs)
    _check_choice(order, "order", _ORDERS)
    trained = _copy(model)
    with torch.no_grad(), _calls_recorded(trained) as called:
        outputs = trained(inputs)
    targets = target_indices(target, outputs)
    steps = _steps(trained, called, modules)
    trained_maps, is_list = _explained(
        explain, trained, inputs, targets, "for the trained model"
    )
    scores = np.full((len(trained_maps), 3, len(steps), inputs.shape[0]), np.nan)
    undefined = _Undefined()
    randomized = _copy(model)
    bar = (
        progress(desc="model_randomization", total=len(steps))
        if show_progress
        else None
    )
    try:
        for k, (name, members) in enumerate(steps):
            if order == "independent":
                randomized = _copy(model)
            _randomize(randomized, members, seed + k)
            maps, _ = _explained(
                explain, randomized, inputs, targets, f"at step '{name}'"
            )
            _check_same_shapes(maps, trained_maps, f"at step '{name}'")
            for i, (before, after) in enumerate(zip(trained_maps, maps)):
                scores[i, :, k] = _compare(
                    before, after, spearmanr, structural_similarity, undefined,
                    f"step '{name}'",
                )  # fmt: skip
            if bar is not None:
                bar.update()
    finally:
        if bar is not None:
            bar.close()
    undefined.warn()
    names = [name for name, _ in steps]
    results = [
        ModelRandomizationResult(names, *(torch.from_numpy(s.copy()) for s in score))
        for score in scores
    ]
    return results if is_list else results[0]


@log_usage()
def class_sensitivity(
    model: nn.Module,
    explain: ExplainFunc,
    inputs: Tensor,
    *,
    other: str = "second",
) -> Tensor | list[Tensor]:
    r"""
    Spearman rank correlation between the map of the predicted class and the
    map of another class, per example: a class-sensitivity check in the
    spirit of Adebayo et al., NeurIPS 2018 (https://arxiv.org/abs/1810.03292).

    A map that explains the model's decision should depend on the class it
    explains; a map that barely changes between the top class and another is
    mostly a map of the input. For example ``n``, with :math:`c_1` the class
    with the highest score and :math:`c` the second highest
    (``other="second"``) or the lowest (``other="last"``):

    .. math::

        \text{sensitivity}_n = \operatorname{corr}\big(
        \operatorname{rank}(M_n^{c_1}),\, \operatorname{rank}(M_n^{c})\big),

    Pearson correlations of average ranks (:func:`scipy.stats.spearmanr`) of
    the flattened maps at the resolution `explain` returns. Lower means more
    class-sensitive; 1 means the same ranking. Where either map is constant
    (or holds NaN or inf) the value is NaN, with a ``RuntimeWarning``.

    Args:

        model (torch.nn.Module): The model; it maps `inputs` to N x C class
                scores, C >= 2. Train-mode buffers are put back afterwards.
        explain (Callable): ``explain(model, inputs, target) -> N x 1 x h x w
                maps`` (or a list of them, for a list of results), as for
                :func:`model_randomization`.
        inputs (Tensor): N x C x H x W batch of images.
        other (str, optional): ``"second"`` (the second highest score) or
                ``"last"`` (the lowest). Ties are broken by class index.

                Default: ``"second"``

    Returns:

        Tensor or list: N float64 correlations on the CPU (a list of them
        when `explain` returns a list).

    Examples::

        >>> explain = lambda m, x, t: LayerCam(m, m.layer4).attribute(x, target=t)
        >>> class_sensitivity(net, explain, images)   # N values in [-1, 1]
    """
    spearmanr, _ = _similarity_functions(ssim=False)
    check_image_batch(inputs)
    _check_choice(other, "other", _OTHER_CLASSES)
    with buffers_preserved(model):
        with torch.no_grad():
            outputs = model(inputs)
        target_indices(None, outputs)  # checks the N x C shape
        if outputs.shape[1] < 2:
            raise ValueError(
                f"The model returns {outputs.shape[1]} class score per example; "
                "class_sensitivity compares two classes, so it needs at least 2."
            )
        ranked = torch.sort(outputs.detach(), dim=1, descending=True, stable=True)[1]
        other_class = ranked[:, 1] if other == "second" else ranked[:, -1]
        top_maps, is_list = _explained(
            explain, model, inputs, ranked[:, 0], "for the top class"
        )
        other_maps, _ = _explained(
            explain, model, inputs, other_class, f"for the {other} class"
        )
    undefined = _Undefined()
    correlations = []
    for top_map, other_map in zip(top_maps, other_maps):
        _check_same_shapes([other_map], [top_map], f"for the {other} class")
        values = [
            _spearman(a, b, spearmanr, undefined, f"the {other} class", n)
            for n, (a, b) in enumerate(zip(_rows(top_map), _rows(other_map)))
        ]
        correlations.append(torch.tensor(values, dtype=torch.float64))
    undefined.warn()
    return correlations if is_list else correlations[0]


def randomization_steps(
    model: nn.Module,
    inputs: Tensor,
    modules: Sequence[str | Sequence[str]] | None = None,
) -> list[str]:
    r"""The names of the steps that :func:`model_randomization` takes for
    `model`, `inputs` and `modules`, in randomization order (output first),
    without explaining anything: one forward pass of a copy of the model
    (modules=None) finds the modules it calls. Raises as
    :func:`model_randomization` does for a model with nothing to randomize or
    an unknown module name.

    Examples::

        >>> randomization_steps(net, images[:1])   # ['classifier.6', ..., 'features.0']
    """
    _check_model(model)
    check_image_batch(inputs)
    trained = _copy(model)
    with torch.no_grad(), _calls_recorded(trained) as called:
        trained(inputs)
    return [name for name, _ in _steps(trained, called, modules)]


def _similarity_functions(ssim: bool) -> tuple[Callable, Callable | None]:
    r"""scipy's ``spearmanr`` and (if asked) scikit-image's SSIM, or an
    ImportError naming the extra that installs them."""
    try:
        from scipy.stats import spearmanr

        structural_similarity = None
        if ssim:
            from skimage.metrics import structural_similarity
    except ImportError as error:
        raise ImportError(
            f"The sanity checks compute rank correlations with scipy and SSIM with "
            f"scikit-image, and {error.name} is not installed. Install both with "
            f"{_INSTALL}."
        ) from error
    return spearmanr, structural_similarity


def _check_model(model: Any) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model must be a torch.nn.Module, got {type(model).__name__}: the "
            "randomization test replaces the parameters of the model's modules. "
            "Pass the network itself, not a function that calls it."
        )
    if next(model.parameters(), None) is None:
        raise ValueError(
            "The model has no parameters, so there is nothing to randomize: the "
            "test compares the maps of the trained model with those of copies whose "
            "learned parameters are replaced by random ones. Pass the trained "
            "network (with its layers as submodules)."
        )


def _check_choice(value: object, name: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(
            f"Unknown {name} {value!r}; choose one of "
            + ", ".join(repr(c) for c in choices)
            + "."
        )


def _copy(model: nn.Module) -> nn.Module:
    try:
        return copy.deepcopy(model)
    except Exception as error:
        raise TypeError(
            "model_randomization randomizes copies of the model (copy.deepcopy), "
            f"and this model cannot be copied: {error}. Make the model deep-copyable "
            "(e.g. drop references to open files or compiled functions)."
        ) from error


def _randomizable(module: nn.Module) -> bool:
    return callable(getattr(module, "reset_parameters", None)) and (
        next(module.parameters(recurse=False), None) is not None
    )


@contextmanager
def _calls_recorded(model: nn.Module) -> Iterator[list[str]]:
    r"""Names of the model's modules with own parameters, in the order of their
    first call during the block (forward pre-hooks, removed afterwards)."""
    called: list[str] = []
    handles = []
    for name, module in model.named_modules():
        if next(module.parameters(recurse=False), None) is None:
            continue

        def record(module: nn.Module, args: Any, name: str = name) -> None:
            if name not in called:
                called.append(name)

        handles.append(module.register_forward_pre_hook(record))
    try:
        yield called
    finally:
        for handle in handles:
            handle.remove()


def _steps(
    model: nn.Module,
    called: list[str],
    modules: Sequence[str | Sequence[str]] | None,
) -> list[tuple[str, list[str]]]:
    r"""``(step name, names of the modules it randomizes)`` in randomization
    order: the called modules from the output down, or the given groups."""
    if modules is None:
        resettable = [n for n in called if _randomizable(model.get_submodule(n))]
        # Warned to model_randomization's caller (past Captum's log_usage).
        _warn_not_resettable([n for n in called if n not in resettable], 5)
        if not resettable:
            raise ValueError(
                "No module with its own parameters and a reset_parameters() method "
                "runs in the model's forward pass, so there is nothing to randomize. "
                "Give the modules to randomize with modules=[...] (names from "
                "model.named_modules() whose submodules have reset_parameters())."
            )
        return [(name, [name]) for name in reversed(resettable)]
    if isinstance(modules, str):
        raise TypeError(
            f"modules must be a list of module names (or of lists of names), got the "
            f"string {modules!r}; write modules=[{modules!r}]."
        )
    return [_group(model, entry) for entry in modules]


def _group(model: nn.Module, entry: str | Sequence[str]) -> tuple[str, list[str]]:
    names = [entry] if isinstance(entry, str) else list(entry)
    members: list[str] = []
    skipped: list[str] = []
    for name in names:
        try:
            module = model.get_submodule(name)
        except AttributeError:
            shown = ", ".join(n for n, _ in list(model.named_children())[:5])
            raise ValueError(
                f"modules names {name!r}, which is not a submodule of the model; "
                f"use names from model.named_modules() (top level: {shown}, ...)."
            ) from None
        for sub_name, sub in module.named_modules(prefix=name):
            if _randomizable(sub):
                members.append(sub_name)
            elif next(sub.parameters(recurse=False), None) is not None:
                skipped.append(sub_name)
    _warn_not_resettable(skipped, 6)
    if not members:
        raise ValueError(
            f"modules entry {entry!r} holds no module with its own parameters and a "
            "reset_parameters() method, so that step would randomize nothing; "
            "remove it or name a module that has learned parameters."
        )
    return "+".join(names), list(dict.fromkeys(members))


def _warn_not_resettable(names: list[str], stacklevel: int) -> None:
    if names:
        warnings.warn(
            f"{len(names)} module(s) with parameters have no reset_parameters() and "
            f"keep their trained parameters: {', '.join(names)}. Give them a "
            "reset_parameters() method to include them.",
            RuntimeWarning,
            stacklevel=stacklevel,
        )


def _randomize(model: nn.Module, names: list[str], seed: int) -> None:
    r"""Each named module's ``reset_parameters()`` under ``manual_seed(seed)``;
    the global random state (CPU and the model's GPUs) is put back."""
    gpus = sorted({p.device.index or 0 for p in model.parameters() if p.is_cuda})
    with torch.random.fork_rng(devices=gpus):
        torch.manual_seed(seed)
        for name in names:
            model.get_submodule(name).reset_parameters()


def _explained(
    explain: ExplainFunc, model: nn.Module, inputs: Tensor, target: Tensor, when: str
) -> tuple[list[Tensor], bool]:
    r"""The maps that `explain` returns, checked, as a list, and whether
    `explain` returned a list."""
    with torch.enable_grad():
        maps = explain(model, inputs, target)
    is_list = isinstance(maps, (list, tuple))
    checked = list(maps) if is_list else [maps]
    n = inputs.shape[0]
    for layer_map in checked:
        if (
            not isinstance(layer_map, Tensor)
            or layer_map.dim() != 4
            or layer_map.shape[0] != n
            or layer_map.shape[1] != 1
        ):
            got = (
                f"shape {tuple(layer_map.shape)}"
                if isinstance(layer_map, Tensor)
                else f"a {type(layer_map).__name__}"
            )
            raise ValueError(
                f"explain returned {got} {when}; it must return "
                f"N x 1 x h x w maps with N = {n} (one map per input), or a list of "
                "them. For per-channel maps, sum over dim 1 with keepdim=True; for "
                "a single image, keep the batch dimension."
            )
    return [m.detach() for m in checked], is_list


def _check_same_shapes(maps: list[Tensor], expected: list[Tensor], when: str) -> None:
    got = [tuple(m.shape) for m in maps]
    want = [tuple(m.shape) for m in expected]
    if got != want:
        raise ValueError(
            f"explain returned maps of shapes {got} {when}, but {want} for the "
            "trained model; it must return the same layers' maps for every model."
        )


class _Undefined:
    r"""Counts comparisons without a defined value, for one warning."""

    def __init__(self) -> None:
        self.cases: dict[tuple[str, int], None] = {}
        self.small_ssim = False

    def add(self, when: str, example: int) -> None:
        self.cases[when, example] = None

    def warn(self) -> None:
        # Four levels up: this, the public function, Captum's log_usage, the caller.
        if self.cases:
            when, example = next(iter(self.cases))
            warnings.warn(
                f"{len(self.cases)} comparison(s) involve a constant map or one with "
                f"NaN or inf (the first: {when}, example {example}); a rank "
                "correlation and SSIM are "
                "undefined there and set to NaN. Average with torch.nanmean, and "
                "count the NaN as maps that carry no ranking.",
                RuntimeWarning,
                stacklevel=4,
            )
        if self.small_ssim:
            warnings.warn(
                "The maps are smaller than 3 x 3 pixels, too small for SSIM: ssim is "
                "NaN. Explain a layer with a larger resolution to get SSIM.",
                RuntimeWarning,
                stacklevel=4,
            )


def _rows(layer_map: Tensor) -> np.ndarray:
    r"""N x h x w float64 numpy copy of an N x 1 x h x w map."""
    return layer_map.to("cpu", torch.float64).squeeze(1).numpy()


def _defined(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(
        np.isfinite(a).all() and np.isfinite(b).all() and np.ptp(a) and np.ptp(b)
    )


def _spearman(
    a: np.ndarray,
    b: np.ndarray,
    spearmanr: Callable,
    undefined: _Undefined,
    when: str,
    example: int,
) -> float:
    if not _defined(a, b):
        undefined.add(when, example)
        return float("nan")
    return float(spearmanr(a.ravel(), b.ravel())[0])


def _compare(
    before: Tensor,
    after: Tensor,
    spearmanr: Callable,
    structural_similarity: Callable,
    undefined: _Undefined,
    when: str,
) -> np.ndarray:
    r"""3 x N: spearman, spearman_abs and ssim of two N x 1 x h x w maps."""
    values = np.full((3, before.shape[0]), np.nan)
    window = min(_SSIM_MAX_WINDOW, min(before.shape[-2:]))
    window -= 1 - window % 2  # odd
    undefined.small_ssim |= window < 3
    for n, (a, b) in enumerate(zip(_rows(before), _rows(after))):
        values[0, n] = _spearman(a, b, spearmanr, undefined, when, n)
        values[1, n] = _spearman(np.abs(a), np.abs(b), spearmanr, undefined, when, n)
        if window >= 3 and _defined(a, b):
            values[2, n] = structural_similarity(
                _unit_range(a), _unit_range(b), data_range=1.0,
                gaussian_weights=True, sigma=_SSIM_SIGMA, win_size=window,
            )  # fmt: skip
    return values


def _unit_range(a: np.ndarray) -> np.ndarray:
    return (a - a.min()) / np.ptp(a)
