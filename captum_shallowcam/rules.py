"""LRP rules for :class:`LayerShallowCam` and :class:`LayerRelevanceCam`.

Re-exports Captum's rule classes beside this package's :class:`ZPlusRule`, so
users find every rule in one place::

    from captum_shallowcam.rules import EpsilonRule, ZPlusRule
"""

from captum_shallowcam.attr.rules import (
    SUPPORTED_MODULES,
    Alpha1_Beta0_Rule,
    EpsilonRule,
    GammaRule,
    IdentityRule,
    PropagationRule,
    ZPlusRule,
)

__all__ = [
    "Alpha1_Beta0_Rule",
    "EpsilonRule",
    "GammaRule",
    "IdentityRule",
    "PropagationRule",
    "SUPPORTED_MODULES",
    "ZPlusRule",
]
