"""What LayerCam, LayerRelevanceCam and LayerShallowCam share.

One base class owns the Captum plumbing (argument formats, the layer or list of
layers, input checks, the passes through the engine); the three methods differ
only in how they turn a layer's activation, gradient and relevance into a map,
which are the small functions at the end of this module.
"""

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from captum.attr import GradientAttribution, LayerAttribution
from torch import Tensor, nn

from captum_shallowcam._captum_compat import TargetType
from captum_shallowcam._model_state import check_not_scripted, original_module
from captum_shallowcam._validation import check_finite, target_indices
from captum_shallowcam.attr._engine import LayerCapture, _Engine, _normal
from captum_shallowcam.attr.rules import RuleMap, validate_rules

InitialRelevance = Literal["contrastive", "target", "clrp"]
ChannelWeights = Literal["signed", "positive", "sqrt", "geometric", "mass"]
MaskKind = Literal[
    "plain", "sign-aware", "both-signs", "split", "split-gated", "split-subtracted"
]
#: LayerCam's masks; LayerShallowCam also takes the ``SPLIT_MASKS``.
MASKS = ("plain", "sign-aware", "both-signs")
#: The masks LayerShallowCam weights per sign part (:func:`split_terms`).
SPLIT_MASKS = ("split", "split-gated", "split-subtracted")
CHANNEL_WEIGHTS = ("signed", "positive", "sqrt", "geometric", "mass")
LayerOrLayers = nn.Module | Sequence[nn.Module]

#: Relative tolerance of the relevance conservation check (see ``check_conservation``).
CONSERVATION_TOLERANCE = 0.05


@dataclass
class CamPasses:
    """Per layer (in the order given): activation A, gradient G, relevance R."""

    targets: Tensor
    activations: list[Tensor]
    gradients: list[Tensor | None] = field(default_factory=list)
    relevances: list[Tensor | None] = field(default_factory=list)
    deltas: list[Tensor | None] = field(default_factory=list)


class _LayerCamBase(LayerAttribution, GradientAttribution):
    """Shared constructor and passes of the CAM methods in this package."""

    _needs_model = False
    #: Brings a layer's activation and gradient to N x K x h x w (LayerCam's).
    _reshape_transform: Callable[[Tensor], Tensor] | None = None

    def __init__(
        self,
        forward_func: Callable,
        layer: LayerOrLayers,
        device_ids: list[int] | None = None,
    ) -> None:
        r"""
        Args:

            forward_func (Callable): The forward function of the model or any
                        modification of it (the ``torch.nn.Module`` itself for the
                        methods that propagate relevance).
            layer (torch.nn.Module or list[torch.nn.Module]): Layer (or layers)
                        for which attributions are computed. Each must produce a
                        4-D feature map and be called once per forward pass. With a
                        list, all maps come from one forward pass and shared
                        backward passes, and ``attribute`` returns a list.
            device_ids (list[int]): Kept for compatibility with Captum's layer
                        methods; DataParallel models are not supported (pass
                        ``model.module``).
        """
        self._layers, self._is_layer_list = _format_layers(layer)
        check_not_scripted(forward_func, self._layers)
        LayerAttribution.__init__(self, forward_func, self._layers[0], device_ids)
        GradientAttribution.__init__(self, forward_func)
        if self._needs_model and not isinstance(forward_func, nn.Module):
            raise TypeError(
                f"{type(self).__name__} propagates relevance through the model's "
                "modules, so forward_func must be the torch.nn.Module itself (not a "
                "function wrapping it)."
            )
        if isinstance(forward_func, nn.Module):
            modules = {id(m) for m in forward_func.modules()}
            for module in self._layers:
                if id(module) not in modules:
                    raise ValueError(
                        f"The layer {type(module).__name__} is not a submodule of the "
                        "model passed as forward_func; pass a module of that model "
                        "(e.g. model.layer1)."
                    )

    @property
    def multiplies_by_inputs(self) -> bool:
        return True

    def _format_result(self, maps: list[Tensor]) -> Tensor | list[Tensor]:
        return maps if self._is_layer_list else maps[0]

    def _passes(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        target: TargetType,
        additional_forward_args: Any,
        attribute_to_layer_input: bool,
        gradients: bool,
        relevance: "_RelevanceRequest | None" = None,
    ) -> CamPasses:
        inputs = _check_inputs(inputs, relevance is not None)
        engine = _Engine(
            self.forward_func,
            self._layers,
            relevance.rules if relevance is not None else None,
            attribute_to_layer_input,
            use_relevance=relevance is not None,
            reshape_transform=self._reshape_transform,
        )
        reshape = self._reshape_transform or (lambda tensor: tensor)
        # Grad mode on for the whole call: Captum's NoiseTunnel and users may
        # call under torch.no_grad().
        with engine.hooked(), torch.enable_grad():
            output = engine.forward(inputs, additional_forward_args)
            # A target tensor made under torch.inference_mode() (Integrated
            # Grad-CAM's per-step targets) cannot be saved for backward.
            targets = _normal(target_indices(target, output))
            passes = CamPasses(
                targets=targets,
                activations=[reshape(c.activation) for c in engine.captures],
            )
            # The last pass frees the graph as it goes, which makes it markedly
            # faster on CPU (memory is reused instead of freshly mapped); the
            # gradient pass is the one that can go last, unless V2 needs the
            # gradients to start its relevance passes.
            gradients_first = relevance is None or relevance.refine is not None
            if gradients and gradients_first:
                passes.gradients = engine.gradients(
                    _scores(output, targets), retain_graph=relevance is not None
                )
                passes.gradients = [reshape(g) for g in passes.gradients]
            if relevance is not None:
                relevance.run(engine, output, passes)
            if gradients and not gradients_first:
                engine.propagation.release()
                passes.gradients = engine.gradients(
                    _scores(output, targets), retain_graph=False
                )
        return passes


class _RelevanceCamBase(_LayerCamBase):
    """Shared constructor and passes of the methods that propagate relevance."""

    _needs_model = True

    def __init__(
        self,
        forward_func: nn.Module,
        layer: LayerOrLayers,
        device_ids: list[int] | None = None,
        rules: RuleMap | None = None,
    ) -> None:
        r"""
        Args:

            forward_func (torch.nn.Module): The model.
            layer (torch.nn.Module or list[torch.nn.Module]): Layer (or layers)
                        for which attributions are computed. Each must produce a
                        4-D feature map and be called once per forward pass. With a
                        list, all maps come from one forward pass and shared
                        backward passes, and ``attribute`` returns a list.
            device_ids (list[int]): Kept for compatibility with Captum's layer
                        methods; DataParallel models are not supported.
            rules (dict, optional): LRP rules for conv and linear operations,
                        keyed by module type, module, or module name, valued by
                        Captum ``PropagationRule`` instances; Captum's
                        ``module.rule`` attribute is honoured too. Default:
                        :class:`~captum_shallowcam.rules.ZPlusRule` everywhere.
        """
        super().__init__(forward_func, layer, device_ids)
        self.rules = validate_rules(rules, original_module(forward_func))

    def _relevance_passes(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        target: TargetType,
        additional_forward_args: Any,
        attribute_to_layer_input: bool,
        initial_relevance: str,
        channel_weights: str,
        check_conservation: bool,
        gradients: bool,
        refine: "RelevanceRefinement | None" = None,
    ) -> CamPasses:
        check_choice(
            "initial_relevance", initial_relevance, ("contrastive", "target", "clrp")
        )
        check_choice("channel_weights", channel_weights, CHANNEL_WEIGHTS)
        request = _RelevanceRequest(
            self.rules,
            initial_relevance,  # type: ignore[arg-type]
            refine,
            check_conservation,
        )
        return self._passes(
            inputs,
            target,
            additional_forward_args,
            attribute_to_layer_input,
            gradients,
            request,
        )

    def _result(
        self, maps: list[Tensor], passes: CamPasses, return_convergence_delta: bool
    ):
        result = self._format_result(maps)
        if return_convergence_delta:
            return result, self._format_result(passes.deltas)  # type: ignore[arg-type]
        return result


#: ``(engine, passes, relevances) -> relevances``, run inside the passes.
RelevanceRefinement = Callable[[_Engine, "CamPasses", list[Tensor]], list[Tensor]]


@dataclass
class _RelevanceRequest:
    """Which relevance the method needs, and how to get it."""

    rules: RuleMap | None
    initial_relevance: InitialRelevance = "contrastive"
    #: A further step on the relevances that needs the gradients (so they are
    #: computed first), e.g. LayerShallowCam's v2.
    refine: "RelevanceRefinement | None" = None
    check_conservation: bool = True

    def run(self, engine: _Engine, output: Tensor, passes: CamPasses) -> None:
        captures = engine.captures
        num_classes = output.shape[1]
        one_hot = torch.nn.functional.one_hot(passes.targets, num_classes).to(
            output.dtype
        )
        if self.initial_relevance == "contrastive":
            initial = one_hot - (1 - one_hot) / num_classes
        elif self.initial_relevance == "target":
            initial = one_hot
        else:
            # CLRP: max(0, R(target) - R(dual)). Every rule is linear in the
            # relevance, so R(target) - R(dual) = R(target - dual): one pass.
            initial = one_hot - (1 - one_hot) / max(num_classes - 1, 1)
        # The graph is kept so that a failed conservation check can be
        # explained by a second, recording pass.
        relevances = engine.relevance(output, initial, captures, retain_graph=True)
        passes.deltas = [initial.sum(1) - r.flatten(1).sum(1) for r in relevances]
        if self.check_conservation:
            _warn_if_not_conserved(engine, output, initial, passes.deltas, captures)
        if self.initial_relevance == "clrp":
            relevances = [torch.relu(r) for r in relevances]
        if self.refine is not None:
            relevances = self.refine(engine, passes, list(relevances))
        passes.relevances = list(relevances)


def _warn_if_not_conserved(
    engine: _Engine,
    output: Tensor,
    initial: Tensor,
    deltas: list[Tensor],
    captures: list[LayerCapture],
) -> None:
    scale = initial.abs().sum(1)
    for capture, delta in zip(captures, deltas):
        error = float((delta.abs() / scale).max())
        if error > CONSERVATION_TOLERANCE:
            if not engine.propagation.recording:
                engine.propagation.recording = True
                engine.relevance(output, initial, captures, retain_graph=True)
            worst = engine.propagation.worst_module
            local = engine.propagation.worst_local_violation
            where = (
                f" The largest violation inside one operation was {local:.3g} at "
                f"'{worst}'."
                if worst is not None and local > CONSERVATION_TOLERANCE
                else " No single rule-carrying operation broke it, so it happened in an "
                "operation the engine does not see (a functional operation on a "
                "tensor in the graph, or a layer inside a branch that not all "
                "relevance passes through)."
            )
            warnings.warn(
                f"Relevance is not conserved at layer '{capture.name}': its total "
                f"differs from the output relevance by {error:.3g} of the output's "
                f"absolute relevance (tolerance {CONSERVATION_TOLERANCE}).{where} Pass "
                "check_conservation=False to silence this for layers inside a branch.",
                RuntimeWarning,
                stacklevel=4,
            )


def _scores(output: Tensor, targets: Tensor) -> Tensor:
    return output.gather(1, targets[:, None])


def _format_layers(layer: LayerOrLayers) -> tuple[list[nn.Module], bool]:
    if isinstance(layer, nn.Module):
        return [layer], False
    if (
        isinstance(layer, (list, tuple))
        and layer
        and all(isinstance(m, nn.Module) for m in layer)
    ):
        if len({id(m) for m in layer}) != len(layer):
            raise ValueError("The list of layers holds the same module twice.")
        return list(layer), True
    raise TypeError(
        "layer must be a torch.nn.Module of the model or a non-empty list of them, "
        f"got {type(layer).__name__}."
    )


def _check_inputs(
    inputs: Tensor | tuple[Tensor, ...], relevance: bool
) -> Tensor | tuple[Tensor, ...]:
    tensors = inputs if isinstance(inputs, tuple) else (inputs,)
    for tensor in tensors:
        if not isinstance(tensor, Tensor):
            raise TypeError(
                f"inputs must be a tensor or a tuple of tensors, got {type(tensor).__name__}."
            )
        if relevance and tensor.dtype in (torch.float16, torch.bfloat16):
            raise TypeError(
                f"inputs have dtype {tensor.dtype}: relevance propagation divides by "
                "small activations and is not reliable in half precision. Convert the "
                "model and inputs with .float() (or .double())."
            )
        if tensor.dim() == 0 or tensor.shape[0] == 0:
            raise ValueError(
                f"inputs of shape {tuple(tensor.shape)} hold no examples; pass a batch "
                "with at least one example along dimension 0."
            )
        check_finite(tensor, "Inputs")
    return inputs


# ------------------------------------------------------------ the map formulas
def spatial_mask(
    activation: Tensor, gradient: Tensor, mask: "MaskKind | bool" = "plain"
) -> Tensor:
    r"""LayerCAM's spatially weighted feature maps :math:`S_k = \mathrm{ReLU}(G_k) A_k`
    (``"plain"``, or False), the sign-aware
    :math:`S^+_k = \mathrm{ReLU}(G_k)\,\mathrm{ReLU}(A_k)` (``"sign-aware"``, or
    True), or the both-signs :math:`S^\pm_k = \mathrm{ReLU}(G_k A_k)`
    (``"both-signs"``, also the evidence of ``"split"`` and ``"split-gated"``,
    which weight its two sign parts apart); all three are equal where
    :math:`A \ge 0`."""
    if mask is True or mask == "sign-aware":
        return torch.relu(gradient) * torch.relu(activation)
    if mask == "both-signs" or mask in SPLIT_MASKS:
        return torch.relu(gradient * activation)
    return torch.relu(gradient) * activation


def resolve_mask(
    mask: "MaskKind | None",
    relu_activations: bool | None,
    default: "MaskKind",
    masks: Sequence[str] = MASKS,
) -> "MaskKind":
    """The mask kind from ``mask`` (one of ``masks``) or the older
    ``relu_activations`` flag (one of them, not both; neither given:
    ``default``)."""
    if mask is not None and relu_activations is not None:
        raise ValueError(
            f"Give mask= or relu_activations=, not both (got mask={mask!r} and "
            f"relu_activations={relu_activations!r}); relu_activations=True is "
            "mask='sign-aware', False is mask='plain'."
        )
    if mask is not None:
        check_choice("mask", mask, masks)
        return mask
    if relu_activations is None:
        return default
    return "sign-aware" if relu_activations else "plain"


def inter_layer_weights(
    relevance: Tensor, channel_weights: ChannelWeights, term: Tensor | None = None
) -> Tensor:
    r"""Channel weights from :math:`\alpha_k = \sum_{ij} R_k(i,j)` (N x K x 1 x 1):
    ``"signed"`` :math:`\alpha_k` as it is, ``"positive"`` :math:`\mathrm{ReLU}(\alpha_k)`,
    ``"sqrt"`` the flatter :math:`\sqrt{\mathrm{ReLU}(\alpha_k)}`, ``"geometric"``
    :math:`\sqrt{\mathrm{ReLU}(\alpha_k) / T_k}` with :math:`T_k = \sum_{ij} t_k(i,j)`
    the total of the per-channel ``term`` the weights multiply (0 where
    :math:`T_k \le 0`), so that channel :math:`k` contributes
    :math:`\sqrt{\mathrm{ReLU}(\alpha_k)\,T_k}` in all: the geometric mean of its
    relevance and of its own evidence; ``"mass"``
    :math:`\mathrm{ReLU}(\alpha_k) / T_k` (0 where :math:`T_k \le 0`), so that
    channel :math:`k` contributes exactly :math:`\mathrm{ReLU}(\alpha_k)`, its
    relevance, spread over the positions in proportion to its term."""
    weights = relevance.sum(dim=(2, 3), keepdim=True)
    if channel_weights == "positive":
        return torch.relu(weights)
    if channel_weights == "sqrt":
        return torch.relu(weights).sqrt()
    if channel_weights in ("geometric", "mass"):
        if term is None:
            raise TypeError(
                f"channel_weights={channel_weights!r} needs the term it weights."
            )
        total = term.sum(dim=(2, 3), keepdim=True)
        tiny = torch.finfo(total.dtype).tiny
        if channel_weights == "mass":
            ratio = torch.relu(weights) / total.clamp_min(tiny)
        else:
            ratio = torch.relu(weights).sqrt() / total.clamp_min(tiny).sqrt()
        return torch.where(total > 0, ratio, torch.zeros_like(ratio))
    if channel_weights != "signed":
        raise ValueError(
            f"channel_weights must be one of {', '.join(map(repr, CHANNEL_WEIGHTS))}; "
            f"got {channel_weights!r}."
        )
    return weights


def split_terms(
    activation: Tensor,
    gradient: Tensor,
    relevance: Tensor,
    channel_weights: str,
    gated: bool = False,
    subtract: bool = False,
) -> Tensor:
    r""":math:`w(\alpha^+_k) S^+_k + w(\alpha^-_k) S^-_k` (N x K x h x w): each
    channel's mask split by the sign of its activations,
    :math:`S^+_k = \mathrm{ReLU}(G_k)\,\mathrm{ReLU}(A_k)` and
    :math:`S^-_k = \mathrm{ReLU}(-G_k)\,\mathrm{ReLU}(-A_k)` (together the
    both-signs mask :math:`\mathrm{ReLU}(G_k A_k)`), each weighted by the
    relevance on its own positions, :math:`\alpha^\pm_k = \sum_{ij} R_k(i,j)\,
    [\pm A_k(i,j) > 0]` (zero activations count with :math:`S^+`).

    ``gated``: only the positions where the part itself is positive count,
    :math:`\alpha^\pm_k = \sum_{ij} R_k(i,j)\, [S^\pm_k(i,j) > 0]`: the
    relevance where the gradient's sign disagrees with the activation's (to first
    order the activation lowers the class score there) is left out.

    ``subtract`` (with ``gated``): LayerCAM's subtracted part
    :math:`D_k = \mathrm{ReLU}(G_k)\,\mathrm{ReLU}(-A_k)` (a negative activation
    under a positive gradient) is taken away again, weighted by the relevance on
    its own positions, :math:`- w(\alpha^D_k) D_k` with
    :math:`\alpha^D_k = \sum_{ij} R_k(i,j)\, [D_k(i,j) > 0]`."""
    positive = activation >= 0
    parts = [  # (part, where its relevance counts without ``gated``, sign)
        (torch.relu(gradient) * torch.relu(activation), positive, 1.0),
        (torch.relu(-gradient) * torch.relu(-activation), ~positive, 1.0),
    ]
    if subtract:
        parts.append((torch.relu(gradient) * torch.relu(-activation), ~positive, -1.0))
    return sum(
        sign
        * inter_layer_weights(
            relevance * (part > 0 if gated else side), channel_weights, part
        )
        * part
        for part, side, sign in parts
    )


def unit_range(maps: Tensor) -> Tensor:
    """Scales each example's map to [0, 1] (a constant map becomes 0)."""
    flat = maps.flatten(1)
    low = flat.amin(1).view(-1, 1, 1, 1)
    high = flat.amax(1).view(-1, 1, 1, 1)
    return (maps - low) / (high - low).clamp_min(torch.finfo(maps.dtype).tiny)


def channel_sum(maps: Tensor, relu: bool) -> Tensor:
    r""":math:`\sum_k m_k` over dimension 1 (N x 1 x h x w), ReLU'd when ``relu``."""
    summed = maps.sum(dim=1, keepdim=True)
    return torch.relu(summed) if relu else summed


def check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {options}; got {value!r}.")
