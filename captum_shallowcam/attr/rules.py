r"""LRP rules for the relevance engine, built on Captum's :class:`PropagationRule`.

Three small ideas, kept apart as in zennit:

* **rules** say how relevance crosses one weighted operation (conv, linear).
  Any Captum rule works (:class:`~captum.attr._utils.lrp_rules.EpsilonRule`,
  ``GammaRule``, ``Alpha1_Beta0_Rule``, ``IdentityRule``, or a user subclass of
  ``PropagationRule`` that overrides ``_manipulate_weights``); the engine applies
  the rule's weight manipulation to a copy of the weights, never to the model.
  :class:`ZPlusRule` adds the :math:`\alpha_1\beta_0` rule on
  :math:`(a_i w_{ij})^+`, which is correct for inputs of either sign.
* **rule maps** say which rule a module gets: :func:`resolve_rule` looks, in
  order, at the ``rules`` mapping given to the attribution method (module, module
  name or module type), at Captum's ``module.rule`` attribute, and at the defaults.
* **canonization** (BatchNorm folded into the preceding conv, residual ``+``
  made rule-aware) is done by the engine for the duration of a call and needs no
  rule (see :mod:`captum_shallowcam.attr._engine`).

Operations without weights use fixed rules, as in Relevance-CAM's code: max
pooling is winner-take-all, average pooling and means are proportional,
element-wise activations (ReLU, ReLU6, ...) and dropout pass relevance unchanged.
"""

from typing import Callable, Dict, Mapping, Optional, Tuple, Type, Union

import torch
from torch import Tensor, nn

from captum_shallowcam._captum_compat import (
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
    "RuleMap",
    "ZPlusRule",
    "resolve_rule",
    "SUPPORTED_MODULES",
]

RuleKey = Union[Type[nn.Module], nn.Module, str]
RuleMap = Mapping[RuleKey, PropagationRule]


class ZPlusRule(PropagationRule):
    r"""The :math:`z^+` rule (:math:`\alpha_1\beta_0`) on positive contributions.

    For an affine operation :math:`z_j = \sum_i a_i w_{ij} + b_j`, relevance is
    redistributed in proportion to the positive contributions
    :math:`(a_i w_{ij})^+ = a_i^+ w_{ij}^+ + a_i^- w_{ij}^-`:

    .. math::
        R_i = \sum_j \frac{(a_i w_{ij})^+}{\sum_{i'} (a_{i'} w_{i'j})^+ + \epsilon}
        R_j

    The bias is ignored. Where an output has no positive contribution at all
    (a depthwise channel whose kernel, after BatchNorm folding with a negative
    scale, is all negative), its relevance is redistributed by the negative
    contributions instead, and where all inputs in its window are zero (the
    output is its bias alone) by :math:`w_{ij}^2` (the flat rule), so relevance is
    conserved. For non-negative inputs (after ReLU) this is exactly Captum's
    ``Alpha1_Beta0_Rule(set_bias_to_zero=True)`` (Montavon et al., "Explaining
    nonlinear classification decisions with deep Taylor decomposition", 2017,
    https://doi.org/10.1016/j.patcog.2016.11.008); for inputs that can be negative
    (the image itself, a linear bottleneck, a residual sum) Captum's rule is
    wrong and this one is not.

    Args:
        epsilon (float, optional): Stabiliser relative to the scale of the
                    layer: :math:`\epsilon \cdot \max_j z^+_j` (per example) is
                    added to the denominator, so the rule behaves the same for
                    activations of any magnitude. Default: 1e-9
    """

    def __init__(self, epsilon: float = 1e-9) -> None:
        self.STABILITY_FACTOR = epsilon

    def _manipulate_weights(self, module, inputs, outputs) -> None:  # noqa: ANN001
        # The engine calls :meth:`relevance` directly; no weights are changed.
        pass

    def relevance(
        self,
        operation: Callable[[Tensor, Tensor, Optional[Tensor]], Tensor],
        inputs: Tensor,
        weight: Tensor,
        relevance: Tensor,
    ) -> Tensor:
        """Redistributes ``relevance`` at the output of ``operation(inputs, weight,
        None)`` onto ``inputs``."""
        positive_weight = weight.clamp(min=0)
        # One reduction, no mask: the check runs on every (often wide) input.
        has_negative_inputs = inputs.numel() > 0 and bool(inputs.amin() < 0)
        # W^- is only needed for negative inputs and the fall-back (a copy of a
        # large linear layer's weights costs as much as the operation).
        negative_weight = weight.clamp(max=0) if has_negative_inputs else None
        if inputs.dim() == 4 and weight.dim() == 4:
            # Convolutions (depthwise above all) run faster channels-last on CPU.
            inputs = inputs.contiguous(memory_format=torch.channels_last)
            relevance = relevance.contiguous(memory_format=torch.channels_last)
        with torch.enable_grad():
            if has_negative_inputs:
                # (a w)^+ = a^+ w^+ + a^- w^-
                sources = (
                    inputs.clamp(min=0).requires_grad_(True),
                    inputs.clamp(max=0).requires_grad_(True),
                )
            else:
                sources = (inputs.detach().requires_grad_(True),)

            def contributions(w_pos: Tensor, w_neg: Optional[Tensor]) -> Tensor:
                z = operation(sources[0], w_pos, None)
                if has_negative_inputs:
                    z = z + operation(sources[1], w_neg, None)
                return z

            z_pos = contributions(positive_weight, negative_weight)
            tiny = torch.finfo(z_pos.dtype).tiny
            lowest, highest = per_example_extremes(z_pos.detach())
            # > 0 always: a zero output with zero relevance must give 0, not 0/0.
            eps = (self.STABILITY_FACTOR * highest.clamp_min(tiny)).clamp_min(tiny)
            any_dead = bool((lowest <= eps).any())
            # Few passes over the (often wide) output: this is the hot loop. z+
            # is clamped in place: its backward (a conv's) does not read it, and
            # the positions at eps after the clamp are exactly those <= eps before.
            ratios = [relevance / z_pos.detach().clamp_min_(eps)]
            outputs = [z_pos]
            flat_relevance = None
            dead = (z_pos.detach() <= eps) & (relevance != 0) if any_dead else None
            if dead is not None and bool(dead.any()):
                # No positive contribution: redistribute by the negative ones, or,
                # where the inputs in the window are all zero, by w^2 (flat rule).
                ratios[0] = torch.where(dead, 0.0, ratios[0])
                if negative_weight is None:
                    negative_weight = weight.clamp(max=0)
                z_neg = contributions(negative_weight, positive_weight)
                lowest_neg, _ = per_example_extremes(z_neg.detach())
                flat = dead & (z_neg >= self.STABILITY_FACTOR * lowest_neg.clamp_max(-tiny))
                outputs.append(z_neg)
                ratios.append(torch.where(dead & ~flat, relevance / (z_neg - eps), 0.0))
                if bool(flat.any()):
                    ones = torch.ones_like(inputs).requires_grad_(True)
                    z_flat = operation(ones, weight * weight, None)
                    flat_ratio = torch.where(flat, relevance / z_flat.clamp_min(1e-30), 0.0)
                    (flat_relevance,) = torch.autograd.grad(z_flat, ones, flat_ratio)
            grads = torch.autograd.grad(outputs, sources, ratios)
        result = sources[0].detach() * grads[0]
        if has_negative_inputs:
            result += sources[1].detach() * grads[1]
        if flat_relevance is not None:
            result += flat_relevance
        return result


def per_example_extremes(z: Tensor) -> Tuple[Tensor, Tensor]:
    """min and max over all but the first dimension, in one pass, shaped to
    broadcast against z."""
    if z.dim() > 2 and not z.is_contiguous():
        # A channels-last tensor is contiguous with the channels moved last:
        # viewed so, it needs no copy.
        z = z.movedim(1, -1)
    lowest, highest = torch.aminmax(z.reshape(z.shape[0], -1), dim=1)
    shape = (-1,) + (1,) * (z.dim() - 1)
    return lowest.view(shape), highest.view(shape)


def _default_rule(module: Optional[nn.Module]) -> PropagationRule:
    return ZPlusRule()


#: Leaf module types the engine knows how to propagate relevance through.
SUPPORTED_MODULES = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.Linear,
    nn.modules.batchnorm._BatchNorm,
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.modules.dropout._DropoutNd,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardtanh,
    nn.Sigmoid,
    nn.Tanh,
    nn.Identity,
    nn.Flatten,
    nn.Unflatten,
    nn.ZeroPad2d,
    nn.ConstantPad2d,
)


def resolve_rule(
    module: Optional[nn.Module],
    name: Optional[str],
    rules: Optional[RuleMap],
) -> Optional[PropagationRule]:
    """Returns the rule the user chose for ``module``, or ``None`` for the default.

    Order: ``rules[module]``, ``rules[name]``, Captum's ``module.rule``
    attribute, ``rules[type]`` along the module's MRO.
    """
    if module is None:
        return None
    if rules:
        for key in (module, name):
            if key is not None and key in rules:
                return rules[key]
    module_rule = getattr(module, "rule", None)
    if isinstance(module_rule, PropagationRule):
        return module_rule
    if rules:
        for cls in type(module).__mro__:
            if cls in rules:
                return rules[cls]
    return None


def rule_for_weighted_op(
    module: Optional[nn.Module], name: Optional[str], rules: Optional[RuleMap]
) -> PropagationRule:
    """The rule for a conv or linear operation executed inside ``module``."""
    return resolve_rule(module, name, rules) or _default_rule(module)


def validate_rules(rules: Optional[RuleMap]) -> Dict[RuleKey, PropagationRule]:
    """Checks a user's rule mapping and returns it as a dict."""
    if rules is None:
        return {}
    if not isinstance(rules, Mapping):
        raise TypeError(
            "rules must be a mapping from module types, modules or module names "
            f"to Captum PropagationRule instances, got {type(rules).__name__}."
        )
    for key, rule in rules.items():
        if not isinstance(rule, PropagationRule):
            raise TypeError(
                f"The rule given for {key!r} is a {type(rule).__name__}; rules must "
                "be instances of captum's PropagationRule (e.g. EpsilonRule(), "
                "Alpha1_Beta0_Rule(), IdentityRule() or captum_shallowcam.ZPlusRule())."
            )
        if not isinstance(key, (str, nn.Module)) and not (
            isinstance(key, type) and issubclass(key, nn.Module)
        ):
            raise TypeError(
                f"rules keys must be module types, modules or module names; got {key!r}."
            )
    return dict(rules)
