r"""LRP rules for the relevance engine, built on Captum's :class:`PropagationRule`.

Three small ideas, kept apart as in zennit:

* **rules** say how relevance crosses one operation. Every rule reaches the
  engine through one contract, :class:`RelevanceRule`: ``relevance`` for a conv
  or linear operation, and ``module_relevance`` for a module applied as a whole
  (an unknown leaf module, a normalisation given a rule). :class:`ZPlusRule`
  implements it directly; any Captum rule (``EpsilonRule``, ``GammaRule``,
  ``Alpha1_Beta0_Rule``, ``IdentityRule``, or a user subclass of
  ``PropagationRule`` that overrides ``_manipulate_weights``) is adapted to it
  by :func:`as_relevance_rule`, which applies the rule's weight manipulation to
  a copy of the weights, never to the model.
* **rule maps** say which rule a module gets: :func:`resolve_rule` looks, in
  order, at the ``rules`` mapping given to the attribution method (module, module
  name or module type), at Captum's ``module.rule`` attribute, and at the defaults.
* **canonization** (BatchNorm folded into the preceding conv, zero padding
  folded into the following one) is in :mod:`._rewrites` and needs no rule.

Operations without weights use fixed rules, as in Relevance-CAM's code: max
pooling is winner-take-all, average pooling and means are proportional
(:func:`z_rule_relevance`), element-wise activations (ReLU, ReLU6, ...) and
dropout pass relevance unchanged.
"""

import difflib
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from captum_shallowcam._captum_compat import (
    Alpha1_Beta0_Rule,
    EpsilonRule,
    GammaRule,
    IdentityRule,
    PropagationRule,
)
from captum_shallowcam.attr._zplus_kernels import (
    WeightedOperation,
    _crop,
    _dense_fallback,
    _FewDeadPixels,
    _merge_signs,
    _operand_layout,
    _split_signs,
    per_example_extremes,
)

#: The one export list of the rules (re-exported by :mod:`captum_shallowcam.rules`).
__all__ = [
    "Alpha1_Beta0_Rule",
    "EpsilonRule",
    "GammaRule",
    "IdentityRule",
    "PropagationRule",
    "RelevanceRule",
    "SUPPORTED_MODULES",
    "ZPlusRule",
]

RuleKey = type[nn.Module] | nn.Module | str
RuleMap = Mapping[RuleKey, PropagationRule]


class RelevanceRule(PropagationRule):
    r"""The contract between a rule and the relevance engine.

    A rule says how relevance :math:`R` at an operation's output is
    redistributed onto its input. Subclass this to add a rule; the engine
    calls nothing else.
    """

    #: Relevance passes element by element (the input's shape is all the rule
    #: reads): a module applied as a whole must then keep its number of
    #: elements, and one that only rearranges them needs no rule at all.
    element_wise = False

    def _manipulate_weights(self, module, inputs, outputs) -> None:  # noqa: ANN001
        # The engine calls :meth:`relevance`; no weights are changed.
        pass

    def relevance(
        self,
        operation: WeightedOperation,
        inputs: Tensor,
        weight: Tensor,
        relevance: Tensor,
        pad: Sequence[int] | None = None,
        *,
        bias: Tensor | None = None,
    ) -> Tensor:
        """Redistributes ``relevance`` at the output of ``operation(inputs,
        weight, bias)`` (a conv or linear map) onto ``inputs``. With ``pad``
        (amounts in :func:`torch.nn.functional.pad` order) the operation runs
        on ``inputs`` zero-padded by ``pad``; padded positions get no
        relevance and the result has the shape of ``inputs``."""
        raise NotImplementedError

    def module_relevance(
        self, forward: Callable[[Tensor], Tensor], inputs: Tensor, relevance: Tensor
    ) -> Tensor:
        """Redistributes ``relevance`` at the output of ``forward(inputs)``, a
        whole module, onto ``inputs``. Rules that cannot be applied to a module
        as a whole raise TypeError (see :attr:`module_rule_error`)."""
        raise TypeError(self.module_rule_error())

    def applies_to_modules(self) -> bool:
        """Whether :meth:`module_relevance` is implemented."""
        return type(self).module_relevance is not RelevanceRule.module_relevance

    def module_rule_error(self) -> str:
        return f"{type(self).__name__} cannot be applied to a module as a whole."


class ZPlusRule(RelevanceRule):
    r"""The :math:`z^+` rule (:math:`\alpha_1\beta_0`) on positive contributions.

    For an affine operation :math:`z_j = \sum_i a_i w_{ij} + b_j`, relevance is
    redistributed in proportion to the positive contributions
    :math:`(a_i w_{ij})^+ = a_i^+ w_{ij}^+ + a_i^- w_{ij}^-`:

    .. math::
        R_i = \sum_j \frac{(a_i w_{ij})^+}{\sum_{i'} (a_{i'} w_{i'j})^+ + \epsilon}
        R_j

    The bias is ignored. Where an output has no positive contribution
    (:math:`z^+_j \le \epsilon \max z^+`; a depthwise channel whose kernel,
    after BatchNorm folding with a negative scale, is all negative), its
    relevance is redistributed by the negative contributions instead, and where
    it has none of either sign either (all inputs in its window are zero: the
    output is its bias alone) by :math:`w_{ij}^2` (the flat rule), so relevance
    is conserved (``conserve=False`` drops it instead, see below). For
    non-negative inputs (after ReLU) this is exactly Captum's
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
        conserve (bool, optional): If False, the relevance of outputs with no
                    positive contribution is dropped (absorbed by the bias), as
                    in Captum's ``Alpha1_Beta0_Rule``, instead of taking the
                    fall-back above. This saves the fall-back's passes (about a
                    third of the relevance pass on BatchNorm-folded depthwise
                    convs, see the speed benchmark) but relevance is then not
                    conserved; pass ``check_conservation=False`` to the method
                    to skip the check that would warn about it. Default: True
    """

    def __init__(self, epsilon: float = 1e-9, conserve: bool = True) -> None:
        self.STABILITY_FACTOR = epsilon
        self.conserve = conserve

    def relevance(
        self,
        operation: WeightedOperation,
        inputs: Tensor,
        weight: Tensor,
        relevance: Tensor,
        pad: Sequence[int] | None = None,
        *,
        bias: Tensor | None = None,
    ) -> Tensor:
        """Redistributes ``relevance`` at the output of ``operation(inputs, weight,
        bias)`` onto ``inputs`` (the bias is ignored).

        ``operation`` is a convolution (any ``groups``) or a linear map (also
        on N x ... x features, applied as a 1x1 convolution). With
        ``pad`` (amounts in :func:`torch.nn.functional.pad` order), it runs on
        ``inputs`` zero-padded by ``pad``; the padded positions get no
        relevance and the result has the shape of ``inputs``.
        """
        if weight.dim() == 2 and inputs.dim() > 2:
            return self._linear_on_last_dim(operation, inputs, weight, relevance, pad)
        return self._relevance_channels_at_dim_1(
            operation, inputs, weight, relevance, pad
        )

    def _relevance_channels_at_dim_1(
        self,
        operation: WeightedOperation,
        inputs: Tensor,
        weight: Tensor,
        relevance: Tensor,
        pad: Sequence[int] | None = None,
    ) -> Tensor:
        # This is the hot loop of the relevance pass, and on CPU a fresh large
        # tensor costs more than the arithmetic on it (page faults), so the work
        # is done in place on tensors this function owns wherever it can be.
        # One reduction, no mask: the check runs on every (often wide) input.
        signed = inputs.numel() > 0 and bool(inputs.amin() < 0)
        unpadded_shape = inputs.shape
        inputs, relevance = _operand_layout(inputs, weight, relevance, pad)
        groups = inputs.shape[1] // weight.shape[1]
        positive_weight = weight.clamp(min=0)
        # W^- only for signed inputs and the fall-back (a copy of a large linear
        # layer's weights costs as much as the operation).
        negative_weight = weight.clamp(max=0) if signed else None
        # (a w)^+ = a^+ w^+ + a^- w^-: for signed inputs one operation on
        # [a^+, a^-] (stacked in each group) with [w^+, w^-], not two.
        source = _split_signs(inputs, groups) if signed else inputs.detach()
        source.requires_grad_(True)

        def stacked(first: Tensor, second: Tensor | None) -> Tensor:
            return torch.cat((first, second), dim=1) if signed else first

        with torch.enable_grad():
            z_pos = operation(source, stacked(positive_weight, negative_weight), None)
            z = z_pos.detach()  # the same storage, worked on in place
            tiny = torch.finfo(z.dtype).tiny
            lowest, highest = per_example_extremes(z)
            # > 0 always: a zero output with zero relevance must give 0, not 0/0.
            eps = (self.STABILITY_FACTOR * highest.clamp_min(tiny)).clamp_min(tiny)
            # Outputs with no positive contribution take a fall-back: written
            # out pixel by pixel when they are few and the operation is
            # pointwise, else as more terms of the one backward pass (without
            # ``conserve``, their relevance is dropped).
            few, dead = self._dead_outputs(z, lowest, eps, relevance, inputs, weight)
            # z+ becomes the ratio R / z+ in place: the backward of the
            # operation reads neither its output nor the ratio's old value.
            ratio = torch.div(relevance, z.clamp_min_(eps), out=z)
            outputs, ratios, flat_input = [z_pos], [ratio], None
            if few is not None:
                few.zero_ratio(ratio)
            elif dead is not None:
                ratio.masked_fill_(dead, 0.0)
            if dead is not None and few is None and self.conserve:
                if negative_weight is None:
                    negative_weight = weight.clamp(max=0)
                more_outputs, more_ratios, flat_input = _dense_fallback(
                    operation, source, stacked(negative_weight, positive_weight),
                    inputs, weight, relevance, eps, dead, unpadded_shape, pad,
                )  # fmt: skip
                outputs += more_outputs
                ratios += more_ratios
            grad_inputs = [source] if flat_input is None else [source, flat_input]
            grads = torch.autograd.grad(outputs, grad_inputs, ratios)
        # The gradients are fresh tensors of this call: multiplied in place.
        result = grads[0].mul_(source.detach())
        if signed:
            result = _merge_signs(result, groups)
        if flat_input is not None:
            result += grads[1]
        if few is not None:
            few.add_relevance(result, inputs, weight, groups)
        if pad is not None:
            result = _crop(result, pad)
        return result

    def _dead_outputs(
        self,
        z: Tensor,
        lowest: Tensor,
        eps: Tensor,
        relevance: Tensor,
        inputs: Tensor,
        weight: Tensor,
    ) -> tuple[_FewDeadPixels | None, Tensor | None]:
        """``(few, dead)``: the outputs with no positive contribution
        (``z <= eps``), or None when there are none; with ``conserve``, only
        those that carry relevance, and ``few`` when they are few enough to be
        written out pixel by pixel."""
        if not bool((lowest <= eps).any()):
            return None, None
        dead = z <= eps
        if not self.conserve:
            return None, dead
        dead.logical_and_(relevance != 0)
        if not bool(dead.any()):
            return None, None
        return _FewDeadPixels.find(dead, eps, relevance, inputs, weight), dead

    def _linear_on_last_dim(
        self,
        operation: WeightedOperation,
        inputs: Tensor,
        weight: Tensor,
        relevance: Tensor,
        pad: Sequence[int] | None,
    ) -> Tensor:
        """A linear map on N x ... x features (ConvNeXt's MLP on channels-last
        maps, a token MLP) is a 1x1 convolution: the rule runs on the features
        moved to dim 1, where it expects the channels."""

        def on_dim_1(x_: Tensor, w_: Tensor, b_: Tensor | None) -> Tensor:
            return operation(x_.movedim(1, -1), w_, b_).movedim(-1, 1)

        padded = inputs if pad is None else F.pad(inputs, tuple(pad))
        result = self._relevance_channels_at_dim_1(
            on_dim_1, padded.movedim(-1, 1), weight, relevance.movedim(-1, 1)
        ).movedim(1, -1)
        return result if pad is None else _crop(result, pad)


def z_rule_relevance(
    operation: Callable[[Tensor], Tensor],
    inputs: Tensor,
    relevance: Tensor,
    epsilon: float | None = None,
) -> Tensor:
    r"""The z-rule through ``operation``, linear in ``inputs`` (average pooling,
    a mean, a sum, a module applied as a whole):
    :math:`R_i = a_i\, \partial z / \partial a_i \cdot R / (z + \epsilon\,
    \mathrm{sign}(z))`.

    With ``epsilon`` None the stabiliser is relative to the scale of ``z``, and
    outputs whose inputs are all zero spread their relevance evenly over them
    (conserving it); with a number (the epsilon rule) it is absolute, and their
    relevance is absorbed as the epsilon rule's is."""
    with torch.enable_grad():
        x = inputs.detach().requires_grad_(True)
        z = operation(x)
        # The ratio must not be part of the graph: the backward of a sum
        # returns a view of it, which would attach the relevance.
        value = z.detach()
        dead = value == 0
        stabiliser = _relative_epsilon(value) if epsilon is None else epsilon
        ratio = torch.where(dead, 0.0, relevance / _stabilize(value, stabiliser))
        (grad,) = torch.autograd.grad(z, x, ratio)
        relevance_in = x.detach() * grad
        if epsilon is None and bool((dead & (relevance != 0)).any()):
            # All inputs zero: spread the relevance evenly over them.
            ones = torch.ones_like(x).requires_grad_(True)
            z_ones = operation(ones)
            flat = torch.where(dead, relevance / z_ones.detach().clamp_min(1e-30), 0.0)
            relevance_in = relevance_in + torch.autograd.grad(z_ones, ones, flat)[0]
    return relevance_in


def pass_through(relevance: Tensor, shape: torch.Size) -> Tensor:
    """Relevance of an element-wise map (or a reshaping, or a broadcast by a
    constant factor) onto its input of ``shape``: unchanged."""
    if relevance.shape == shape:
        return relevance
    if relevance.numel() == shape.numel():  # a reshaping module
        return relevance.reshape(shape)
    return relevance.sum_to_size(shape)  # broadcast by a constant factor


def _stabilize(z: Tensor, epsilon: float | Tensor) -> Tensor:
    """``z`` pushed away from 0 by ``epsilon`` (the LRP epsilon stabiliser)."""
    return z + epsilon * torch.where(z >= 0, 1.0, -1.0).to(z.dtype)


def _relative_epsilon(z: Tensor, epsilon: float = 1e-6) -> Tensor:
    """``epsilon`` times the largest ``|z|`` of each example, so that a rule
    behaves the same whatever the activations' scale."""
    lowest, highest = per_example_extremes(z.detach())
    return epsilon * torch.maximum(highest, -lowest).clamp_min(
        torch.finfo(z.dtype).tiny
    )


# ------------------------------------------------- Captum's rules, adapted
class _CaptumIdentity(RelevanceRule):
    """Captum's ``IdentityRule``: relevance passes unchanged."""

    element_wise = True

    def __init__(self, rule: PropagationRule) -> None:
        self.rule = rule

    def relevance(self, operation, inputs, weight, relevance, pad=None, *, bias=None):  # noqa: ANN001
        shape = inputs.shape if pad is None else F.pad(inputs, tuple(pad)).shape
        result = relevance.reshape(shape)
        return result if pad is None else _crop(result, pad)

    def module_relevance(self, forward, inputs, relevance):  # noqa: ANN001
        return pass_through(relevance, inputs.shape)


class _CaptumWeightRule(RelevanceRule):
    """Any other Captum rule: its ``_manipulate_weights`` on a copy of the
    weights, then the gradient-times-input step with its stabiliser
    (``EpsilonRule``, ``GammaRule``, ``Alpha1_Beta0_Rule``, a user subclass).
    Only the epsilon rule also applies to a module as a whole."""

    def __init__(self, rule: PropagationRule) -> None:
        self.rule = rule

    def relevance(self, operation, inputs, weight, relevance, pad=None, *, bias=None):  # noqa: ANN001
        x = inputs if pad is None else F.pad(inputs, tuple(pad))
        params = _WeightCopy(weight, bias)
        self.rule._manipulate_weights(params, (x,), None)
        with torch.enable_grad():
            xg = x.clone().requires_grad_(True)
            z = operation(xg, params.weight, params.bias)
            ratio = relevance / _stabilize(z, self.rule.STABILITY_FACTOR)
            (grad,) = torch.autograd.grad(z, xg, ratio)
        result = x * grad
        return result if pad is None else _crop(result, pad)

    def module_relevance(self, forward, inputs, relevance):  # noqa: ANN001
        if not isinstance(self.rule, EpsilonRule):
            raise TypeError(self.module_rule_error())
        return z_rule_relevance(forward, inputs, relevance, self.rule.STABILITY_FACTOR)

    def applies_to_modules(self) -> bool:
        return isinstance(self.rule, EpsilonRule)

    def module_rule_error(self) -> str:
        return f"{type(self.rule).__name__} cannot be applied to a module as a whole."


class _WeightCopy:
    """Stands in for a module when a Captum rule manipulates weights."""

    def __init__(self, weight: Tensor, bias: Tensor | None):
        self.weight = weight.clone()
        self.bias = None if bias is None else bias.clone()


def as_relevance_rule(rule: PropagationRule) -> RelevanceRule:
    """``rule`` behind the engine's one contract: this package's rules as they
    are, Captum's adapted."""
    if isinstance(rule, RelevanceRule):
        return rule
    if isinstance(rule, IdentityRule):
        return _CaptumIdentity(rule)
    return _CaptumWeightRule(rule)


def default_rule() -> RelevanceRule:
    """The rule of conv and linear operations no rule was given for."""
    return ZPlusRule()


#: Normalisations that pass relevance through unless the user gives them a rule
#: (applied to the module as a whole, as for an unknown module).
NORMALISATION_MODULES = (nn.LayerNorm, nn.GroupNorm)

#: Leaf module types the engine knows how to propagate relevance through.
SUPPORTED_MODULES = NORMALISATION_MODULES + (
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


def weight_computations(model: nn.Module) -> set[nn.Module]:
    """The modules of ``model`` that compute a parameter from others (those
    inside each ``ParametrizationList`` of ``torch.nn.utils.parametrize``:
    ``weight_norm``, ``spectral_norm``, ``orthogonal``) rather than transform
    the data. Relevance never passes through them: the conv or linear layer
    that uses the weight they compute gets the rule."""
    return {
        inner
        for module in model.modules()
        if isinstance(module, parametrize.ParametrizationList)
        for inner in module.modules()
    }


def resolve_rule(
    module: nn.Module | None,
    name: str | None,
    rules: RuleMap | None,
) -> PropagationRule | None:
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


def validate_rules(
    rules: RuleMap | None, model: nn.Module | None = None
) -> dict[RuleKey, PropagationRule]:
    """Checks a user's rule mapping and returns it as a dict. With ``model``,
    every name and module key must be one of its modules: a key that matches
    nothing would leave the default rule in place without a word."""
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
        _refuse_batch_norm_key(key, model)
        if model is not None:
            _refuse_weight_computation_key(key, model)
    if model is not None:
        _check_keys_match(rules, model)
    return dict(rules)


def _refuse_batch_norm_key(key: object, model: nn.Module | None) -> None:
    """A rule for BatchNorm would never be used: BatchNorm is folded into the conv
    or linear map before it, and a standalone one passes relevance on as it is."""
    module = key
    if isinstance(key, str) and model is not None:
        module = dict(model.named_modules()).get(key)
    is_batch_norm = isinstance(module, nn.modules.batchnorm._BatchNorm) or (
        isinstance(module, type) and issubclass(module, nn.modules.batchnorm._BatchNorm)
    )
    if is_batch_norm:
        raise ValueError(
            f"The rule given for {key!r} would never be used: BatchNorm gets no rule, "
            "it is folded into the conv or linear layer before it (a standalone "
            "BatchNorm passes relevance on unchanged). Give the rule to that conv."
        )


def _refuse_weight_computation_key(key: object, model: nn.Module) -> None:
    """A rule for a parametrization (``weight_norm``'s ``_WeightNorm``) would
    never be used: it computes a weight, and the layer using it gets the rule."""

    def matches(name: str, module: nn.Module) -> bool:
        if isinstance(key, type):
            return isinstance(module, key)
        return key is module or key == name

    computations = weight_computations(model)
    named = list(model.named_modules())
    matched = [module for name, module in named if matches(name, module)]
    if not matched or not all(module in computations for module in matched):
        return  # a type also used on the data path keeps its rule there
    owners = [
        name
        for name, module in named
        if parametrize.is_parametrized(module)
        and any(m in matched for m in module.parametrizations.modules())
    ]
    raise ValueError(
        f"The rule given for {key!r} would never be used: it is a "
        "parametrization (torch.nn.utils.parametrize, e.g. weight_norm), which "
        "computes a weight, not an activation, and needs no rule; relevance "
        "passes through the layer that uses the weight. Leave it out, or give "
        f"the rule to that layer ({', '.join(map(repr, owners[:3]))}) or its type."
    )


def _check_keys_match(rules: RuleMap, model: nn.Module) -> None:
    """Each name or module key of ``rules`` is a module of ``model`` (type keys
    may name types the model lacks: one rule map serves many models)."""
    # The names the engine gives modules: a module registered twice has the first.
    names = {m: n or type(m).__name__ for n, m in model.named_modules()}
    known = set(names.values())
    for key in rules:
        if isinstance(key, str) and key not in known:
            aliases = {
                n: names[m]
                for n, m in model.named_modules(remove_duplicate=False)
                if m in names
            }
            if key in aliases:
                raise ValueError(
                    f"rules has the key {key!r}, a second name of module "
                    f"{aliases[key]!r} (registered twice in the model); rules go by "
                    f"the first name: use {aliases[key]!r}."
                )
            close = difflib.get_close_matches(key, sorted(known), n=3, cutoff=0.5)
            hint = (
                f"closest names: {', '.join(map(repr, close))}"
                if close
                else f"its modules are named like {', '.join(map(repr, sorted(known)[:3]))}"
            )
            raise ValueError(
                f"rules has the key {key!r}, which names no module of the model "
                f"({hint}). Use a name from model.named_modules(), the module itself, "
                "or a module type."
            )
        if isinstance(key, nn.Module) and key not in names:
            raise ValueError(
                f"rules has a {type(key).__name__} module as a key that is not a "
                "module of the model (a module of another model or a copy?). Use "
                "a module of this model, its name, or the module type "
                f"{type(key).__name__}."
            )
