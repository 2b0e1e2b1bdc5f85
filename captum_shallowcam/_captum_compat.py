"""The one place that imports Captum's private API.

Captum keeps its LRP rule classes and several helpers in private packages
(``captum.attr._utils``, ``captum._utils``). Everything this package needs from
them is imported here, so that a Captum release that moves them breaks one
module, and the supported Captum range in ``pyproject.toml`` is pinned to the
versions the tests cover.
"""

from captum._utils.common import _format_additional_forward_args, _run_forward
from captum._utils.progress import progress
from captum._utils.typing import TargetType
from captum.attr._utils.lrp_rules import (
    Alpha1_Beta0_Rule,
    EpsilonRule,
    GammaRule,
    IdentityRule,
    PropagationRule,
)

__all__ = [
    "Alpha1_Beta0_Rule",
    "EpsilonRule",
    "GammaRule",
    "IdentityRule",
    "PropagationRule",
    "TargetType",
    "_format_additional_forward_args",
    "_run_forward",
    "progress",
]
