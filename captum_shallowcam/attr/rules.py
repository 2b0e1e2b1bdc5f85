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

from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Type, Union

import torch
import torch.nn.functional as F
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
#: ``operation(inputs, weight, bias)``: a convolution or a linear map.
WeightedOperation = Callable[[Tensor, Tensor, Optional[Tensor]], Tensor]


class ZPlusRule(PropagationRule):
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

    def _manipulate_weights(self, module, inputs, outputs) -> None:  # noqa: ANN001
        # The engine calls :meth:`relevance` directly; no weights are changed.
        pass

    def relevance(
        self,
        operation: WeightedOperation,
        inputs: Tensor,
        weight: Tensor,
        relevance: Tensor,
        pad: Optional[Sequence[int]] = None,
    ) -> Tensor:
        """Redistributes ``relevance`` at the output of ``operation(inputs, weight,
        None)`` onto ``inputs``.

        ``operation`` is a convolution (any ``groups``) or a linear map (also
        on N x ... x features, applied as a 1x1 convolution). With
        ``pad`` (amounts in :func:`torch.nn.functional.pad` order), it runs on
        ``inputs`` zero-padded by ``pad``; the padded positions get no
        relevance and the result has the shape of ``inputs``.
        """
        if weight.dim() == 2 and inputs.dim() > 2:
            return self._linear_on_last_dim(operation, inputs, weight, relevance, pad)
        return self._relevance_channels_at_dim_1(operation, inputs, weight, relevance, pad)

    def _relevance_channels_at_dim_1(
        self,
        operation: WeightedOperation,
        inputs: Tensor,
        weight: Tensor,
        relevance: Tensor,
        pad: Optional[Sequence[int]] = None,
    ) -> Tensor:
        # This is the hot loop of the relevance pass, and on CPU a fresh large
        # tensor costs more than the arithmetic on it (page faults), so the work
        # is done in place on tensors this function owns wherever it can be.
        # One reduction, no mask: the check runs on every (often wide) input.
        signed = inputs.numel() > 0 and bool(inputs.amin() < 0)
        unpadded_shape = inputs.shape
        if inputs.dim() == 4 and weight.dim() == 4:
            # Convolutions (depthwise above all) run faster channels-last on CPU.
            inputs = _channels_last(inputs, pad)
            # Only a channels-first relevance is copied; a view of a
            # channels-last one (cropped by the rule above) is read as it is.
            if relevance.is_contiguous() and relevance.shape[1] > 1:
                relevance = relevance.contiguous(memory_format=torch.channels_last)
        elif pad is not None:
            inputs = F.pad(inputs, tuple(pad))
        groups = inputs.shape[1] // weight.shape[1]
        positive_weight = weight.clamp(min=0)
        # W^- only for signed inputs and the fall-back (a copy of a large linear
        # layer's weights costs as much as the operation).
        negative_weight = weight.clamp(max=0) if signed else None
        # (a w)^+ = a^+ w^+ + a^- w^-: for signed inputs one operation on
        # [a^+, a^-] (stacked in each group) with [w^+, w^-], not two.
        source = _split_signs(inputs, groups) if signed else inputs.detach()
        source.requires_grad_(True)

        def stacked(first: Tensor, second: Optional[Tensor]) -> Tensor:
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
            few = dead = None
            if bool((lowest <= eps).any()):
                dead = z <= eps
                if self.conserve:
                    dead.logical_and_(relevance != 0)
                    if not bool(dead.any()):
                        dead = None
                    else:
                        few = _FewDeadPixels.find(dead, eps, relevance, inputs, weight)
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

    def _linear_on_last_dim(
        self,
        operation: WeightedOperation,
        inputs: Tensor,
        weight: Tensor,
        relevance: Tensor,
        pad: Optional[Sequence[int]],
    ) -> Tensor:
        """A linear map on N x ... x features (ConvNeXt's MLP on channels-last
        maps, a token MLP) is a 1x1 convolution: the rule runs on the features
        moved to dim 1, where it expects the channels."""

        def on_dim_1(x_: Tensor, w_: Tensor, b_: Optional[Tensor]) -> Tensor:
            return operation(x_.movedim(1, -1), w_, b_).movedim(-1, 1)

        padded = inputs if pad is None else F.pad(inputs, tuple(pad))
        result = self._relevance_channels_at_dim_1(
            on_dim_1, padded.movedim(-1, 1), weight, relevance.movedim(-1, 1)
        ).movedim(1, -1)
        return result if pad is None else _crop(result, pad)


def _dense_fallback(
    operation: WeightedOperation,
    source: Tensor,
    negative_weight: Tensor,
    inputs: Tensor,
    weight: Tensor,
    relevance: Tensor,
    eps: Tensor,
    dead: Tensor,
    unpadded_shape: torch.Size,
    pad: Optional[Sequence[int]],
) -> Tuple[List[Tensor], List[Tensor], Optional[Tensor]]:
    """The fall-back of the ``dead`` outputs (no positive contribution) as more
    terms of the rule's one backward pass: outputs and their ratios, and the
    input of the flat term (whose relevance is not multiplied by the input).

    Dead outputs are redistributed by their negative contributions, or, with no
    contribution of either sign (all inputs in the window zero), by w^2 (flat).
    ``negative_weight`` is what ``source`` needs for (a w)^- (see
    :func:`_split_signs`); ``dead`` is consumed.
    """
    z_neg = operation(source, negative_weight, None)
    zn = z_neg.detach()
    flat = dead & (zn >= -eps)
    not_by_negative = dead.logical_not_().logical_or_(flat)
    ratio_neg = torch.div(relevance, zn.sub_(eps), out=zn)
    outputs, ratios = [z_neg], [ratio_neg.masked_fill_(not_by_negative, 0.0)]
    if not bool(flat.any()):
        return outputs, ratios, None
    square = weight * weight
    # sum_i w_ij^2 over the window's real inputs depends on neither the example
    # nor the input values: one example of ones.
    ones = torch.ones(
        (1,) + tuple(unpadded_shape[1:]), dtype=zn.dtype, device=zn.device
    )
    if pad is not None:
        ones = F.pad(ones, tuple(pad))
    flat_ratio = relevance / operation(ones, square, None).clamp_min_(1e-30)
    # The backward of a linear operation does not depend on the input's value:
    # taken at (an alias of) the input itself.
    alias = inputs.detach().requires_grad_(True)
    outputs.append(operation(alias, square, None))
    ratios.append(flat_ratio.masked_fill_(flat.logical_not_(), 0.0))
    return outputs, ratios, alias


def _channels_last(x: Tensor, pad: Optional[Sequence[int]]) -> Tensor:
    """``x`` channels-last, zero-padded by ``pad`` if given, in one copy at most."""
    if pad is None:
        return x.contiguous(memory_format=torch.channels_last)
    if len(pad) > 4:  # padding of the channels or the batch: not worth a fast path
        return F.pad(x, tuple(pad)).contiguous(memory_format=torch.channels_last)
    left, right, top, bottom = (tuple(pad) + (0, 0))[:4]
    n, c, h, w = x.shape
    out = torch.empty(
        (n, c, h + top + bottom, w + left + right),
        dtype=x.dtype,
        device=x.device,
        memory_format=torch.channels_last,
    ).zero_()
    out[:, :, top : top + h, left : left + w] = x
    return out


def _split_signs(x: Tensor, groups: int) -> Tensor:
    """[x^+, x^-] stacked along the channels of each of the ``groups`` groups."""
    out = _empty_with_channels(x, 2 * x.shape[1])
    halves = _by_group(out, groups)
    x_groups = _by_group(x.detach(), groups)
    per_group = x_groups.shape[2]
    torch.clamp(x_groups, min=0, out=halves[:, :, :per_group])
    torch.clamp(x_groups, max=0, out=halves[:, :, per_group:])
    return out


def _merge_signs(relevance: Tensor, groups: int) -> Tensor:
    """The relevance of [x^+, x^-] (see :func:`_split_signs`) summed onto x."""
    out = _empty_with_channels(relevance, relevance.shape[1] // 2)
    halves = _by_group(relevance, groups)
    per_group = halves.shape[2] // 2
    torch.add(
        halves[:, :, :per_group], halves[:, :, per_group:], out=_by_group(out, groups)
    )
    return out


def _empty_with_channels(like: Tensor, channels: int) -> Tensor:
    """An empty tensor shaped as ``like`` but for its channels (dim 1),
    channels-last when 4-D."""
    memory_format = torch.channels_last if like.dim() == 4 else torch.contiguous_format
    shape = (like.shape[0], channels) + tuple(like.shape[2:])
    return torch.empty(
        shape, dtype=like.dtype, device=like.device, memory_format=memory_format
    )


def _by_group(x: Tensor, groups: int) -> Tensor:
    """A view of ``x`` (N x C x ...) as N x groups x C/groups x ..."""
    return x.view((x.shape[0], groups, x.shape[1] // groups) + tuple(x.shape[2:]))


def _at_pixels(t: Tensor, pixels: Tuple[Tensor, ...]) -> Tensor:
    """The channel vectors of ``t`` at ``pixels`` (count x channels), a copy."""
    return t.movedim(1, -1)[pixels]


class _FewDeadPixels:
    """The dead outputs of a pointwise convolution (1x1, stride 1, no padding)
    when they sit at few pixels: their fall-back is computed from their
    contributions written out, not by passes over whole tensors (a linear
    bottleneck's 1x1 conv has a handful among millions of outputs)."""

    def __init__(self, pixels, dead, relevance, eps) -> None:  # noqa: ANN001
        self.pixels = pixels  # indices (example, position...) of the pixels
        self.dead = dead  # count x out: dead outputs with relevance
        self.relevance = relevance  # count x out
        self.eps = eps  # count x 1

    @classmethod
    def find(
        cls,
        dead: Tensor,
        eps: Tensor,
        relevance: Tensor,
        inputs: Tensor,
        weight: Tensor,
    ) -> Optional["_FewDeadPixels"]:
        """The pixels of the ``dead`` outputs, or None when the operation is not
        a pointwise convolution or they are too many."""
        pointwise = dead.dim() > 2 and all(k == 1 for k in weight.shape[2:])
        if not (pointwise and dead.shape[2:] == inputs.shape[2:]):
            return None
        candidates = dead.any(1)  # over the channels: contiguous for channels-last
        count = int(candidates.sum())
        # All contributions of a pixel are out x in-per-group numbers: cheap while
        # that stays well below one pass over the output.
        if count * weight.shape[0] * weight.shape[1] > dead.numel() // 8:
            return None
        pixels = candidates.nonzero(as_tuple=True)
        eps_at = eps.reshape(-1)[pixels[0]].unsqueeze(1)
        return cls(
            pixels, _at_pixels(dead, pixels), _at_pixels(relevance, pixels), eps_at
        )

    def zero_ratio(self, ratio: Tensor) -> None:
        """Sets R / z+ to 0 at the dead outputs, in place."""
        at = _at_pixels(ratio, self.pixels).masked_fill_(self.dead, 0.0)
        ratio.movedim(1, -1).index_put_(self.pixels, at)

    def add_relevance(
        self, result: Tensor, inputs: Tensor, weight: Tensor, groups: int
    ) -> None:
        """Adds the fall-back's relevance (negative contributions, else flat)
        of the dead outputs to ``result`` (shaped as ``inputs``), in place."""
        c_out, per_group = weight.shape[:2]
        count = self.pixels[0].numel()
        a = _at_pixels(inputs, self.pixels).view(count, groups, 1, per_group)
        w = weight.reshape(groups, c_out // groups, per_group)
        negative = (a * w).clamp_(max=0)  # count x groups x out/group x in/group
        z_neg = negative.sum(-1).view(count, c_out)
        flat = self.dead & (z_neg >= -self.eps)
        s_neg = torch.where(self.dead & ~flat, self.relevance / (z_neg - self.eps), 0.0)
        r_in = (negative * s_neg.view(count, groups, -1, 1)).sum(2)
        square = w * w
        share = square / square.sum(-1, keepdim=True).clamp_min(1e-30)
        r_flat = torch.where(flat, self.relevance, 0.0).view(count, groups, -1, 1)
        r_in += (share * r_flat).sum(2)
        result.movedim(1, -1).index_put_(
            self.pixels, r_in.view(count, -1), accumulate=True
        )


def _crop(x: Tensor, pad: Sequence[int]) -> Tensor:
    """The inverse of ``F.pad(x, pad)`` for non-negative ``pad``, as a view."""
    for i in range(len(pad) // 2):
        dim = x.dim() - 1 - i
        before, after = pad[2 * i], pad[2 * i + 1]
        x = x.narrow(dim, before, x.shape[dim] - before - after)
    return x


def per_example_extremes(z: Tensor) -> Tuple[Tensor, Tensor]:
    """min and max over all but the first dimension, shaped to broadcast
    against z (two reductions: on CPU ``torch.aminmax`` over a dimension is
    several times slower than ``amin`` and ``amax`` together)."""
    if z.dim() > 2 and not z.is_contiguous():
        # A channels-last tensor is contiguous with the channels moved last:
        # viewed so, it needs no copy.
        z = z.movedim(1, -1)
    flat = z.reshape(z.shape[0], -1)
    shape = (-1,) + (1,) * (z.dim() - 1)
    return flat.amin(1).view(shape), flat.amax(1).view(shape)


def default_rule() -> PropagationRule:
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
