"""Metrics for attribution maps, in the style of :mod:`captum.metrics`."""

from captum_shallowcam.metrics.deletion_insertion import (
    DeletionInsertionResult,
    deletion_insertion,
)

__all__ = ["DeletionInsertionResult", "deletion_insertion"]
