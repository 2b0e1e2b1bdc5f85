"""Named LRP rule presets, as zennit's composites: one name for a ``rules=`` map.

The relevance methods (:class:`~captum_shallowcam.LayerShallowCam`,
:class:`~captum_shallowcam.LayerRelevanceCam`) take ``rules=``, a map from
module types (or modules, or module names) to rules. A preset is such a map by
name, so the command line (``--rules``), the method registry's options and the
benchmark choose rules by name::

    >>> LayerShallowCam(model, layers, rules=rule_preset("epsilon"))

============================  ================================================
``zplus``                     the engine's defaults: z+ (:class:`ZPlusRule`) on
                              convolutions and linear layers, conserving
``zplus-no-conserve``         z+ without its conserving fall-back for outputs
                              with no positive contribution
``epsilon``                   Captum's ε rule (ε = 1e-9) on convolutions and
                              linear layers
============================  ================================================

Adding a preset is one :func:`register_rule_preset` call.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from torch import nn

from captum_shallowcam.attr.rules import EpsilonRule, RuleMap, ZPlusRule

__all__ = [
    "RULE_PRESETS",
    "RulePreset",
    "register_rule_preset",
    "rule_preset",
    "rule_preset_names",
    "unregister_rule_preset",
]

#: The module types a preset gives a rule: those with weights.
WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


@dataclass(frozen=True)
class RulePreset:
    """One preset: ``rules()`` builds a fresh ``rules=`` map (None: the
    engine's defaults)."""

    name: str
    rules: Callable[[], RuleMap | None]
    description: str


_REGISTRY: dict[str, RulePreset] = {}
#: The registered presets, by name (read-only view).
RULE_PRESETS: Mapping[str, RulePreset] = MappingProxyType(_REGISTRY)


def register_rule_preset(preset: RulePreset, *, replace: bool = False) -> RulePreset:
    """Adds ``preset`` to :data:`RULE_PRESETS`; a name already taken is refused
    unless ``replace``."""
    if preset.name in _REGISTRY and not replace:
        raise ValueError(
            f"A rule preset named {preset.name!r} is registered already; pass "
            "replace=True to replace it, or choose another name."
        )
    _REGISTRY[preset.name] = preset
    return preset


def unregister_rule_preset(name: str) -> None:
    """Removes a preset (e.g. one a test registered)."""
    _REGISTRY.pop(name, None)


def rule_preset_names() -> tuple[str, ...]:
    """The registered names, in registration order."""
    return tuple(_REGISTRY)


def rule_preset(name: str) -> RuleMap | None:
    """A fresh ``rules=`` map of preset ``name`` (None: the engine's defaults)."""
    if name not in _REGISTRY:
        raise ValueError(
            f"Unknown rule preset {name!r}; choose from {', '.join(_REGISTRY)}."
        )
    return _REGISTRY[name].rules()


def _one_rule_on_weighted(rule: Callable[[], object]) -> Callable[[], RuleMap]:
    def rules() -> RuleMap:
        shared = rule()
        return dict.fromkeys(WEIGHTED, shared)

    return rules


for _preset in (
    RulePreset("zplus", lambda: None, "z+ on weighted layers, conserving (default)"),
    RulePreset(
        "zplus-no-conserve",
        _one_rule_on_weighted(lambda: ZPlusRule(conserve=False)),
        "z+ without its conserving fall-back",
    ),
    RulePreset(
        "epsilon",
        _one_rule_on_weighted(lambda: EpsilonRule(epsilon=1e-9)),
        "Captum's epsilon rule (1e-9) on weighted layers",
    ),
):
    register_rule_preset(_preset)
