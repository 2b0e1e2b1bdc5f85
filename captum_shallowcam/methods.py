"""The CAM methods by name: one table that everything else reads.

Each :class:`MethodSpec` names one method as the command line, the benchmark,
the docs' method list and the cross-cutting tests know it: its Captum layer
attribution class, the ``attribute`` options it is run with, the ``+options``
a name may add, one line of description and the citation. Adding a method is
its class plus one :func:`register_method` call::

    >>> from captum_shallowcam.methods import MethodSpec, register_method
    >>> register_method(MethodSpec("mycam", MyLayerCam, "my CAM", "Me et al., 2026"))
    >>> explain = make_explainer(model, [model.layer1], "mycam")
    >>> maps = explain(inputs, targets)          # [N x 1 x h x w per layer]

Method names are strings such as ``shallowcam``, ``layercam+sign-aware`` or
``shallowcam-v2+positive``: a registered name, then ``+option``\\ s from
:data:`OPTIONS` that the method accepts.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from captum.attr import LayerGradCam
from torch import Tensor, nn

from captum_shallowcam.attr import (
    LayerAblationCam,
    LayerCam,
    LayerGradCamPlusPlus,
    LayerGroupCam,
    LayerIntegratedGradCam,
    LayerRelevanceCam,
    LayerScoreCam,
    LayerShallowCam,
    LayerXGradCam,
)
from captum_shallowcam.attr.presets import rule_preset

#: ``(inputs, targets) -> [map per layer]``, what :func:`make_explainer` returns.
Explainer = Callable[[Tensor, Tensor], list[Tensor]]


@dataclass(frozen=True)
class Option:
    """A ``+name`` suffix of a method name: ``attribute`` keyword arguments, and
    optionally the rule preset (:mod:`captum_shallowcam.attr.presets`) the
    method is constructed with."""

    description: str
    attribute: Mapping[str, object] = field(default_factory=dict)
    rules: str | None = None


#: Every ``+option`` a method name may carry; each method says which it accepts.
OPTIONS: Mapping[str, Option] = MappingProxyType(
    {
        "positive": Option(
            "ReLU(alpha) channel weights", {"channel_weights": "positive"}
        ),
        "signed": Option("signed channel weights", {"channel_weights": "signed"}),
        "sqrt": Option(
            "sqrt(ReLU(alpha)) channel weights", {"channel_weights": "sqrt"}
        ),
        "geometric": Option(
            "geometric-mean channel weights", {"channel_weights": "geometric"}
        ),
        "mass": Option(
            "ReLU(alpha) / sum(term) channel weights (each channel adds up to its relevance)",
            {"channel_weights": "mass"},
        ),
        "target": Option("one-hot initial relevance", {"initial_relevance": "target"}),
        "contrastive": Option(
            "contrastive initial relevance", {"initial_relevance": "contrastive"}
        ),
        "clrp": Option("CLRP initial relevance", {"initial_relevance": "clrp"}),
        "sign-aware": Option("mask ReLU(G) ReLU(A)", {"relu_activations": True}),
        "plain-mask": Option("mask ReLU(G) A", {"relu_activations": False}),
        "both-signs": Option("mask ReLU(G A)", {"mask": "both-signs"}),
        "split": Option(
            "mask ReLU(G A), its positive- and negative-activation parts weighted "
            "apart by their own relevance",
            {"mask": "split"},
        ),
        "split-gated": Option(
            "the split mask, each part weighted by the relevance only where the "
            "part is positive (G A > 0)",
            {"mask": "split-gated"},
        ),
        "split-subtracted": Option(
            "the split-gated mask less LayerCAM's subtracted part ReLU(G) ReLU(-A), "
            "weighted by the relevance where that part is positive",
            {"mask": "split-subtracted"},
        ),
        "no-conserve": Option(
            "the z+ rule without its conserving fall-back",
            {"check_conservation": False},
            "zplus-no-conserve",
        ),
    }
)
_MASK = ("sign-aware", "plain-mask", "both-signs")
_SPLIT = ("split", "split-gated", "split-subtracted")
_RELEVANCE = (
    "positive", "signed", "sqrt", "geometric", "mass", "target", "contrastive",
    "clrp", "no-conserve",
)  # fmt: skip


@dataclass(frozen=True)
class MethodSpec:
    """One method of the registry.

    Attributes:
        name: The name on the command line and in results (``--methods``).
        method: The Captum layer attribution class, constructed as
            ``method(model, layers)`` (``rules=`` too where ``relevance``).
        description: One line: what the map is.
        citation: Authors, venue and year (and a link).
        defaults: ``attribute`` keyword arguments the name stands for.
        options: The ``+options`` (keys of :data:`OPTIONS`) the name accepts.
        relevance: The method propagates LRP relevance (it takes ``rules=``
            and needs the ``nn.Module`` itself).
        perturbation: The method runs extra forward passes per channel or
            group (slow: about one forward pass per channel).
        one_layer: The class takes a single layer (Captum's own layer
            methods); a list of layers gets one instance per layer.
    """

    name: str
    method: type
    description: str
    citation: str
    defaults: Mapping[str, object] = field(default_factory=dict)
    options: tuple[str, ...] = ()
    relevance: bool = False
    perturbation: bool = False
    one_layer: bool = False

    def explainer(
        self,
        model: nn.Module,
        layers: Sequence[nn.Module],
        options: Sequence[str] = (),
        rules: str | None = None,
    ) -> Explainer:
        """``(inputs, targets) -> [map per layer]`` for this method with
        ``options``; the maps are detached (Captum's LayerGradCam returns them
        with their graph). ``rules`` names a rule preset for a relevance
        method (the others propagate no relevance and ignore it)."""
        kwargs = dict(self.defaults)
        preset = rules if self.relevance else None
        for name in options:
            option = OPTIONS[name]
            kwargs.update(option.attribute)
            if option.rules is not None:
                if preset not in (None, option.rules):
                    raise ValueError(
                        f"Method {self.name}+{name} uses the rules {option.rules!r}, "
                        f"not {preset!r}: drop the rule preset or the +{name}."
                    )
                preset = option.rules
        constructor: dict[str, object] = {}
        if preset is not None:
            constructor["rules"] = rule_preset(preset)
        layers = list(layers)
        if self.one_layer:
            per_layer = [self.method(model, layer, **constructor) for layer in layers]
            return lambda x, t: [
                m.attribute(x, target=t, **kwargs).detach() for m in per_layer
            ]
        instance = self.method(model, layers, **constructor)
        return lambda x, t: [
            m.detach() for m in instance.attribute(x, target=t, **kwargs)
        ]


_REGISTRY: dict[str, MethodSpec] = {}
#: The registered methods, by name (read-only view; add with :func:`register_method`).
METHODS: Mapping[str, MethodSpec] = MappingProxyType(_REGISTRY)


def register_method(spec: MethodSpec, *, replace: bool = False) -> MethodSpec:
    """Adds ``spec`` to :data:`METHODS`; a name already taken is refused unless
    ``replace``. Returns ``spec``."""
    if "+" in spec.name.rstrip("+") or "," in spec.name or not spec.name.rstrip("+"):
        raise ValueError(
            "A method name has no ',' and no '+' but at its end, as in 'gradcam++' "
            f"(got {spec.name!r})."
        )
    unknown = [o for o in spec.options if o not in OPTIONS]
    if unknown:
        raise ValueError(
            f"Method {spec.name!r}: unknown options {unknown}; options are "
            + ", ".join(OPTIONS)
            + "."
        )
    if spec.name in _REGISTRY and not replace:
        raise ValueError(
            f"A method named {spec.name!r} is registered already; pass replace=True "
            "to replace it, or choose another name."
        )
    _REGISTRY[spec.name] = spec
    return spec


def unregister_method(name: str) -> None:
    """Removes a method (e.g. one a test registered)."""
    _REGISTRY.pop(name, None)


def method_names() -> tuple[str, ...]:
    """The registered names, in registration order."""
    return tuple(_REGISTRY)


def parse_method(method: str) -> tuple[MethodSpec, list[str]]:
    """The spec and options of a name such as ``layercam+sign-aware``; an
    unknown name or option, or one the method does not take, is refused."""
    named = [n for n in _REGISTRY if method == n or method.startswith(n + "+")]
    base = max(named, key=len) if named else method.split("+")[0]
    rest = method[len(base) :]
    options = rest[1:].split("+") if rest else []
    for option in options:
        if option not in OPTIONS:
            raise ValueError(
                f"Unknown option '+{option}' in method '{method}'; options are "
                + ", ".join(f"+{o}" for o in OPTIONS)
                + "."
            )
    if base not in _REGISTRY:
        raise ValueError(
            f"Unknown method '{base}'; choose from {', '.join(_REGISTRY)}."
        )
    spec = _REGISTRY[base]
    refused = [o for o in options if o not in spec.options]
    if refused:
        if not spec.options:
            raise ValueError(f"Method '{base}' takes no options (got '{method}').")
        if spec.relevance and set(refused) <= set(_MASK):
            raise ValueError(
                f"Method '{base}' has no mask, so {_listing(_MASK)} do not "
                f"apply (got '{method}')."
            )
        raise ValueError(
            f"Method '{base}' takes only the options {_listing(spec.options)} "
            f"(got '{method}')."
        )
    return spec, options


def _listing(options: Sequence[str]) -> str:
    names = [f"+{o}" for o in options]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def make_explainer(
    model: nn.Module,
    layers: Sequence[nn.Module],
    method: str,
    rules: str | None = None,
) -> Explainer:
    """An explainer ``(inputs, targets) -> [map per layer]`` for a method name;
    ``rules`` names a rule preset (:func:`~captum_shallowcam.attr.presets.rule_preset`)
    for the relevance methods (default: each method's own rules)."""
    spec, options = parse_method(method)
    return spec.explainer(model, layers, options, rules)


def methods_help() -> str:
    """The names and options, for the command line's help."""
    with_options = ", ".join(s.name for s in _REGISTRY.values() if s.options)
    return (
        f"names: {', '.join(_REGISTRY)}; {with_options} may add options: "
        + ", ".join(
            f"+{o}" for o in OPTIONS if any(o in s.options for s in _REGISTRY.values())
        )
        + " (e.g. shallowcam-v2+positive, layercam+sign-aware)"
    )


_LAYERCAM = (
    "Jiang et al., LayerCAM, IEEE TIP 2021, https://doi.org/10.1109/TIP.2021.3089943"
)
_RELEVANCE_CAM = (
    "Lee et al., Relevance-CAM, CVPR 2021, https://arxiv.org/abs/2103.13859"
)
_SHALLOW_CAM = (
    "CHENG Yan et al., Computer Science 52(6A), 2025, "
    "https://doi.org/10.11896/jsjkx.240500140"
)

for _spec in (
    MethodSpec(
        "layercam",
        LayerCam,
        "ReLU(sum_k ReLU(G_k) A_k), gradients weight every position",
        _LAYERCAM,
        options=_MASK,
    ),
    MethodSpec(
        "gradcam",
        LayerGradCam,
        "Captum's LayerGradCam: channels weighted by their mean gradient",
        "Selvaraju et al., Grad-CAM, ICCV 2017, https://arxiv.org/abs/1610.02391",
        defaults={"relu_attributions": True},
        one_layer=True,
    ),
    MethodSpec(
        "relevancecam",
        LayerRelevanceCam,
        "ReLU(sum_k alpha_k A_k), channels weighted by their LRP relevance",
        _RELEVANCE_CAM,
        options=_RELEVANCE,
        relevance=True,
    ),
    MethodSpec(
        "shallowcam",
        LayerShallowCam,
        "LayerShallowCam's default: LayerCAM's mask of both signs, split by the "
        "activation's sign, each part adding up to its inter-layer relevance "
        "where it has evidence",
        _SHALLOW_CAM,
        options=(*_RELEVANCE, *_MASK, *_SPLIT),
        relevance=True,
    ),
    *(
        MethodSpec(
            f"shallowcam-{variant}",
            LayerShallowCam,
            f"LayerShallowCam, variant='{variant}': {what}",
            _SHALLOW_CAM,
            defaults={"variant": variant},
            options=(*_RELEVANCE, *_MASK, *(_SPLIT if variant != "v3" else ())),
            relevance=True,
        )
        for variant, what in (
            ("v1", "relevance from the logits"),
            ("v2", "relevance from the next layer's evidence"),
            ("v3", "a 2-D mask times relevance-weighted activations"),
        )
    ),
    MethodSpec(
        "gradcam++",
        LayerGradCamPlusPlus,
        "channels weighted by positive gradients with second-order coefficients",
        "Chattopadhay et al., Grad-CAM++, WACV 2018, https://arxiv.org/abs/1710.11063",
    ),
    MethodSpec(
        "xgradcam",
        LayerXGradCam,
        "channels weighted by activation-normalised gradient sums (axiom-based)",
        "Fu et al., XGrad-CAM, BMVC 2020, https://arxiv.org/abs/2008.02312",
    ),
    MethodSpec(
        "scorecam",
        LayerScoreCam,
        "channels weighted by the class probability of the input masked by each",
        "Wang et al., Score-CAM, CVPRW 2020, https://arxiv.org/abs/1910.01279",
        perturbation=True,
    ),
    MethodSpec(
        "ablationcam",
        LayerAblationCam,
        "channels weighted by the drop of the class score when each is zeroed",
        "Ramaswamy (Desai and Ramaswamy), Ablation-CAM, WACV 2020",
        perturbation=True,
    ),
    MethodSpec(
        "groupcam",
        LayerGroupCam,
        "channel groups weighted by the score of the input masked by each group",
        "Zhang et al., Group-CAM, arXiv 2021, https://arxiv.org/abs/2103.13859",
        perturbation=True,
    ),
    MethodSpec(
        "integrated-gradcam",
        LayerIntegratedGradCam,
        "Grad-CAM with gradients integrated along a path of scaled inputs",
        "Sattarzadeh et al., Integrated Grad-CAM, ICASSP 2021, "
        "https://ieeexplore.ieee.org/document/9415064",
        perturbation=True,
    ),
):
    register_method(_spec)
