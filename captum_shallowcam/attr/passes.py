"""The per-layer passes the CAM methods are built from, as one public function,
and the map formulas the methods apply to them (:func:`spatial_mask`,
:func:`inter_layer_weights`, :func:`split_terms`, :func:`channel_sum`), for building other maps."""

from typing import Any

from torch import Tensor, nn

from captum_shallowcam._captum_compat import TargetType
from captum_shallowcam.attr._base import (
    CamPasses,
    InitialRelevance,
    LayerOrLayers,
    RelevanceRefinement,
    _LayerCamBase,
    _RelevanceCamBase,
    channel_sum,
    inter_layer_weights,
    spatial_mask,
    split_terms,
)
from captum_shallowcam.attr.rules import RuleMap


def compute_layer_passes(
    model: nn.Module,
    layer: LayerOrLayers,
    inputs: Tensor | tuple[Tensor, ...],
    *,
    target: TargetType = None,
    additional_forward_args: Any = None,
    attribute_to_layer_input: bool = False,
    relevance: bool = True,
    rules: RuleMap | None = None,
    initial_relevance: InitialRelevance = "clrp",
    check_conservation: bool = True,
    refine: RelevanceRefinement | None = None,
) -> CamPasses:
    r"""
    The activation :math:`A`, gradient :math:`G = \partial y^c / \partial A` and
    LRP relevance :math:`R` at each layer, from one forward pass and one
    gradient and one relevance backward pass (each stopping at the lowest
    layer), as :class:`~captum_shallowcam.LayerShallowCam` computes them; the
    analogue of Captum's ``compute_layer_gradients_and_eval``, for building and
    studying other maps. The model is left as it was.

    Args:

        model (torch.nn.Module): The model.
        layer (torch.nn.Module or list[torch.nn.Module]): The layer(s), as for the
                    layer methods.
        inputs (Tensor or tuple[Tensor, ...]): The inputs, N examples.
        target (int, list, Tensor, or None, optional): The class per example;
                    None is the predicted class. Default: None
        additional_forward_args (Any, optional): Passed to the model after the
                    inputs. Default: None
        attribute_to_layer_input (bool, optional): Take the layer's input instead
                    of its output. Default: False
        relevance (bool, optional): Also propagate relevance (False gives
                    activations and gradients only, as LayerCam needs, and works
                    with any model LayerCam works with). Default: True
        rules (dict, optional): LRP rules, as for the layer methods' constructor.
        initial_relevance (str, optional): ``"clrp"``, ``"contrastive"`` or
                    ``"target"`` (see :class:`~captum_shallowcam.LayerShallowCam`;
                    ``"clrp"`` relevance is returned after its ReLU).
                    Default: ``"clrp"``
        check_conservation (bool, optional): Warn when relevance is not
                    conserved. Default: True
        refine (callable, optional): ``refine(engine, passes, relevances) ->
                    relevances``, run inside the call after the gradient pass
                    (e.g. to push relevance down from another layer's evidence
                    with ``engine.relevance``, as ``variant="v2"`` does).
                    Default: None

    Returns:
        :class:`CamPasses` with ``targets`` (N) and, per layer in the order given,
        ``activations``, ``gradients``, ``relevances`` and ``deltas`` (the
        conservation differences); the last two are empty without ``relevance``.

    Examples::

        >>> passes = compute_layer_passes(net, [net.layer1, net.layer2], x, target=3)
        >>> a, g, r = passes.activations[0], passes.gradients[0], passes.relevances[0]
    """
    if not relevance:
        return _LayerCamBase(model, layer)._passes(
            inputs,
            target,
            additional_forward_args,
            attribute_to_layer_input,
            gradients=True,
        )
    return _RelevanceCamBase(model, layer, rules=rules)._relevance_passes(
        inputs,
        target,
        additional_forward_args,
        attribute_to_layer_input,
        initial_relevance,
        "positive",
        check_conservation,
        gradients=True,
        refine=refine,
    )


__all__: list[str] = [
    "CamPasses",
    "channel_sum",
    "compute_layer_passes",
    "inter_layer_weights",
    "spatial_mask",
    "split_terms",
]
