"""The metrics by name: one table that the experiments read.

A :class:`MetricSpec` names a metric function and the per-example fields of its
result that a benchmark records, under the names the result files use. The
``deletion``/``insertion``/``overall`` record of the benchmark is spelled here
and nowhere else::

    >>> spec = METRICS["deletion-insertion"]
    >>> spec.record(deletion_insertion(model, inputs, maps, target=targets))
    {'deletion': [...], 'insertion': [...], 'overall': [...]}

Adding a metric is its function plus one :func:`register_metric` call.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from captum_shallowcam.metrics.deletion_insertion import deletion_insertion

__all__ = [
    "DEFAULT_METRIC",
    "METRICS",
    "MetricSpec",
    "metric_names",
    "register_metric",
    "unregister_metric",
]


@dataclass(frozen=True)
class MetricSpec:
    """One metric of the registry.

    Attributes:
        name: The metric's name in results and on the command line.
        function: ``function(forward_func, inputs, attributions, target=...,
            **options)``, in the style of :mod:`captum.metrics`.
        fields: Record field -> attribute of the function's result holding one
            value per example (e.g. ``"deletion" -> "deletion_auc"``), in the
            order records list them.
        description: One line: what is measured, and which way is better.
    """

    name: str
    function: Callable[..., Any]
    fields: Mapping[str, str]
    description: str = ""

    def record(self, result: Any) -> dict[str, list[float]]:
        """The per-example values of ``result``, by record field."""
        return {
            field: getattr(result, attr).tolist() for field, attr in self.fields.items()
        }


_REGISTRY: dict[str, MetricSpec] = {}
#: The registered metrics, by name (read-only view; add with :func:`register_metric`).
METRICS: Mapping[str, MetricSpec] = MappingProxyType(_REGISTRY)
#: The metric of the benchmark and of its result files.
DEFAULT_METRIC = "deletion-insertion"


def register_metric(spec: MetricSpec, *, replace: bool = False) -> MetricSpec:
    """Adds ``spec`` to :data:`METRICS`; a name already taken is refused unless
    ``replace``. Returns ``spec``."""
    if spec.name in _REGISTRY and not replace:
        raise ValueError(
            f"A metric named {spec.name!r} is registered already; pass replace=True "
            "to replace it, or choose another name."
        )
    if not spec.fields:
        raise ValueError(f"Metric {spec.name!r} records no fields; name at least one.")
    _REGISTRY[spec.name] = spec
    return spec


def unregister_metric(name: str) -> None:
    """Removes a metric (e.g. one a test registered)."""
    _REGISTRY.pop(name, None)


def metric_names() -> tuple[str, ...]:
    """The registered names, in registration order."""
    return tuple(_REGISTRY)


register_metric(
    MetricSpec(
        DEFAULT_METRIC,
        deletion_insertion,
        MappingProxyType(
            {
                "deletion": "deletion_auc",
                "insertion": "insertion_auc",
                "overall": "overall",
            }
        ),
        "deletion AUC (lower is better), insertion AUC (higher is better) and "
        "overall = 100 (insertion - deletion) (higher is better)",
    )
)
