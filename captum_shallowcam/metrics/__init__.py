"""Metrics for attribution maps, in the style of :mod:`captum.metrics`."""

from captum_shallowcam.metrics._substrates import GaussianBlur, RiseBlur, rise_kernel
from captum_shallowcam.metrics.deletion_insertion import (
    DeletionInsertionResult,
    deletion_insertion,
)
from captum_shallowcam.metrics.protocols import PROTOCOLS, protocol_kwargs

__all__ = [
    "PROTOCOLS",
    "DeletionInsertionResult",
    "GaussianBlur",
    "RiseBlur",
    "deletion_insertion",
    "protocol_kwargs",
    "rise_kernel",
]
