"""The registered methods as the cross-cutting suites run them.

The suites (bad inputs, concurrency, exact-or-refused, properties) take their
method lists from :mod:`captum_shallowcam.methods` through :func:`registered`,
called at collection time, so a method added with ``register_method`` is run by
every one of them without editing any (``tests/test_registration.py`` checks
this with a toy method).

:func:`explainer` builds a method as a test calls it: the registered class on
the model and layer(s), whose ``attribute`` adds the name's defaults (e.g.
``variant="v2"`` for ``shallowcam-v2``) and, for the perturbation methods, the
options that keep them quick on the tests' tiny models.
"""

from __future__ import annotations

from typing import Any

from captum_shallowcam.methods import METHODS, MethodSpec

#: Fewer path steps and groups (and a blur that fits 8 x 8 images): the
#: perturbation methods are about one forward
#: pass per step or group, and these tests pin behaviour, not the maps' quality.
QUICK: dict[str, dict[str, Any]] = {
    "integrated-gradcam": {"n_steps": 4},
    "groupcam": {"groups": 4, "blur_kernel_size": 3},
}


def is_captums(spec: MethodSpec) -> bool:
    """Captum's own class (``gradcam`` is Captum's ``LayerGradCam`` as it is):
    it keeps Captum's behaviour (its errors, no per-model lock, no input
    checks), which the package's suites do not pin."""
    return spec.method.__module__.split(".")[0] == "captum"


def registered(
    *, relevance: bool | None = None, perturbation: bool | None = None
) -> list[str]:
    """The registered method names now (call it at collection time), the
    package's own classes only (see :func:`is_captums`); ``relevance`` or
    ``perturbation`` keep the names whose spec has that flag value."""
    return [
        name
        for name, spec in METHODS.items()
        if not is_captums(spec)
        and relevance in (None, spec.relevance)
        and perturbation in (None, spec.perturbation)
    ]


class Explainer:
    """``METHODS[name].method(model, layers, **init)``; :meth:`attribute` adds
    the name's default options and the quick options (a caller's keyword
    arguments win)."""

    def __init__(self, name: str, model: Any, layers: Any, **init: Any) -> None:
        spec = METHODS[name]
        self.name = name
        self.spec = spec
        self.method = spec.method(model, layers, **init)
        self.defaults = {**spec.defaults, **QUICK.get(name, {})}

    def attribute(self, inputs: Any, **kwargs: Any) -> Any:
        return self.method.attribute(inputs, **{**self.defaults, **kwargs})


def explainer(name: str, model: Any, layers: Any, **init: Any) -> Explainer:
    """The registered method ``name`` on ``model`` and ``layers``."""
    return Explainer(name, model, layers, **init)
