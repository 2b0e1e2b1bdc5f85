r"""Named deletion/insertion protocols: the metric settings of the papers.

A protocol only fills in :func:`~captum_shallowcam.metrics.deletion_insertion`'s
``step``, ``deletion_substrate`` and ``insertion_substrate``; never the target
or the score. Values given explicitly override the preset's
(:func:`protocol_kwargs`).

============================  =====  ==========  ==================================
name                          step   deletion    insertion starts from
============================  =====  ==========  ==================================
``captum-shallowcam``          224   zeros       ``GaussianBlur(11, 5)``: torchvision's
                                                 truncated Gaussian, reflection padding
``rise``                       224   zeros       ``RiseBlur(11, 5)``: RISE's own code,
                                                 scipy kernel, zero padding
``groupcam``                  1792   zeros       ``GaussianBlur(51, 50)``
============================  =====  ==========  ==================================

``captum-shallowcam`` is what this package used before the presets existed
(its results up to 0.1 are in that protocol). ``rise`` follows
``eclique/RISE`` (``evaluation.py`` and ``Evaluation.ipynb``): ``CausalMetric``
with step 224, ``torch.zeros_like`` for deletion and
``conv2d(x, gkern(11, 5), padding=5)`` for insertion. ``groupcam`` follows the
Group-CAM paper's step (1792) and its blur, kornia's ``gaussian_blur2d(x, (51,
51), (50, 50))``, which is torchvision's ``gaussian_blur`` with reflection
padding (the repository's scripts use step 448).
"""

from typing import Any, NamedTuple

from captum_shallowcam.metrics._substrates import (
    GaussianBlur,
    RiseBlur,
    SubstrateType,
    describe_substrate,
)

__all__ = ["PROTOCOLS", "DEFAULT_PROTOCOL", "Protocol", "protocol_kwargs", "describe"]


class Protocol(NamedTuple):
    name: str
    step: int
    deletion_substrate: SubstrateType
    insertion_substrate: SubstrateType
    source: str


PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol(
            "captum-shallowcam",
            224,
            None,
            GaussianBlur(11, 5.0),
            "this package up to 0.1",
        ),
        Protocol("rise", 224, None, RiseBlur(11, 5.0), "eclique/RISE evaluation.py"),
        Protocol("groupcam", 1792, None, GaussianBlur(51, 50.0), "Group-CAM paper"),
    )
}
DEFAULT_PROTOCOL = "captum-shallowcam"


def protocol_kwargs(name: str, **overrides: Any) -> dict[str, Any]:
    r"""The metric's keyword arguments for protocol `name`.

    `overrides` (``step``, ``deletion_substrate``, ``insertion_substrate``)
    replace the preset's values when they are not None.
    """
    if name not in PROTOCOLS:
        raise ValueError(
            f"Unknown protocol {name!r}; choose from {', '.join(PROTOCOLS)}."
        )
    preset = PROTOCOLS[name]
    kwargs: dict[str, Any] = {
        "step": preset.step,
        "deletion_substrate": preset.deletion_substrate,
        "insertion_substrate": preset.insertion_substrate,
    }
    unknown = set(overrides) - set(kwargs)
    if unknown:
        raise TypeError(f"protocol_kwargs cannot override {sorted(unknown)}.")
    kwargs.update({k: v for k, v in overrides.items() if v is not None})
    return kwargs


def describe(name: str, kwargs: dict[str, Any] | None = None) -> str:
    r"""One line for result files: the protocol and the settings in force."""
    kwargs = kwargs if kwargs is not None else protocol_kwargs(name)
    deletion = describe_substrate(kwargs.get("deletion_substrate"), "zeros")
    insertion = describe_substrate(kwargs.get("insertion_substrate"), "zeros")
    return (
        f"protocol {name}: step {kwargs['step']}; deletion to {deletion}; "
        f"insertion from {insertion}; score: softmax probability of the target"
    )
