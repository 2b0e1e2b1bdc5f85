"""Metrics for attribution maps, in the style of :mod:`captum.metrics`."""

from captum_shallowcam.metrics._substrates import GaussianBlur, RiseBlur, rise_kernel
from captum_shallowcam.metrics.deletion_insertion import (
    DeletionInsertionResult,
    deletion_insertion,
)
from captum_shallowcam.metrics.protocols import PROTOCOLS, protocol_kwargs
from captum_shallowcam.metrics.registry import (
    METRICS,
    MetricSpec,
    register_metric,
)
from captum_shallowcam.metrics.sanity import (
    ModelRandomizationResult,
    class_sensitivity,
    model_randomization,
    randomization_steps,
)

__all__ = [
    "METRICS",
    "PROTOCOLS",
    "MetricSpec",
    "DeletionInsertionResult",
    "GaussianBlur",
    "ModelRandomizationResult",
    "RiseBlur",
    "class_sensitivity",
    "deletion_insertion",
    "model_randomization",
    "protocol_kwargs",
    "randomization_steps",
    "register_metric",
    "rise_kernel",
]
