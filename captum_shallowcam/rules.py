"""LRP rules for :class:`LayerShallowCam` and :class:`LayerRelevanceCam`.

Re-exports Captum's rule classes beside this package's :class:`ZPlusRule` and
the rule contract :class:`RelevanceRule`, so users find every rule in one
place::

    from captum_shallowcam.rules import EpsilonRule, ZPlusRule

The export list is :data:`captum_shallowcam.attr.rules.__all__`.
"""

from captum_shallowcam.attr import rules as _rules
from captum_shallowcam.attr.rules import *  # noqa: F403

__all__ = list(_rules.__all__)
