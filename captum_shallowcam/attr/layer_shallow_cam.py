"""Shallow-layer CAM from spatial weights and inter-layer relevance (CHENG Yan et al.)."""

from typing import Any, Literal

import torch
from captum.log import log_usage
from torch import Tensor

from captum_shallowcam._captum_compat import TargetType
from captum_shallowcam.attr._base import (
    MASKS,
    SPLIT_MASKS,
    CamPasses,
    ChannelWeights,
    InitialRelevance,
    MaskKind,
    RelevanceRefinement,
    _RelevanceCamBase,
    channel_sum,
    check_choice,
    inter_layer_weights,
    resolve_mask,
    spatial_mask,
    split_terms,
    unit_range,
)
from captum_shallowcam.attr._engine import _Engine

Variant = Literal["v1", "v2", "v3"]


class LayerShallowCam(_RelevanceCamBase):
    r"""
    Class activation maps for shallow layers that combine LayerCAM's spatially
    weighted feature maps (the *mask*) with channel weights obtained by
    layer-wise relevance propagation (the *inter-layer relevance weights*).
    The default:

    .. math::
        S^+_k = \mathrm{ReLU}(G^c_k) \odot \mathrm{ReLU}(A_k), \qquad
        S^-_k = \mathrm{ReLU}(-G^c_k) \odot \mathrm{ReLU}(-A_k),

        \alpha^+_k = \sum_{ij} R_k(i,j)\, [S^+_k(i,j) > 0], \qquad
        \alpha^-_k = \sum_{ij} R_k(i,j)\, [S^-_k(i,j) > 0],

        L^c = \mathrm{ReLU}\Big(\sum_k
            \frac{\mathrm{ReLU}(\alpha^+_k)}{\sum_{ij} S^+_k(i,j)}\, S^+_k +
            \frac{\mathrm{ReLU}(\alpha^-_k)}{\sum_{ij} S^-_k(i,j)}\, S^-_k\Big)

    with :math:`G^c = \partial y^c / \partial A` and :math:`R` the LRP relevance
    at the layer (contrastive LRP from the logits, ``initial_relevance="clrp"``;
    a part with no evidence adds nothing). The mask
    :math:`S^+_k + S^-_k = \mathrm{ReLU}(G^c_k A_k)` says *where* in a channel
    the evidence lies, of either sign: layers such as linear bottlenecks and
    residual sums have negative activations, and a negative activation under a
    negative gradient raises the class score as a positive one under a
    positive gradient does. The mask is split by the sign
    of the activation, and each part adds up to exactly the relevance on the
    positions where it has evidence (``mask="split-gated"``,
    ``channel_weights="mass"``), the mask only spreading it: the relevance
    decides, per channel, how much each sign carries. The (z+) relevance is
    about :math:`|G_k A_k|` whatever the gradient's sign, so the gate leaves out
    the relevance of positions whose activation, to first order, lowers the
    class score.

    Other readings are options. ``mask="split"`` (the previous development
    default) counts each part's relevance over all positions of its activation
    sign, :math:`\bar\alpha^+_k = \sum_{ij} R_k(i,j)\,[A_k(i,j) \ge 0]` and
    :math:`\bar\alpha^-_k = \sum_{ij} R_k(i,j)\,[A_k(i,j) < 0]`.
    ``mask="sign-aware"`` keeps the positive part
    only, :math:`S^+_k` with :math:`\bar\alpha^+_k` (LayerCAM with the sign-aware
    mask, ``LayerCam(...).attribute(..., relu_activations=True)``);
    ``mask="both-signs"`` takes :math:`\mathrm{ReLU}(G^c_k A_k)` unsplit with
    :math:`\alpha_k = \sum_{ij} R_k(i,j)`; ``mask="plain"`` is LayerCAM's
    :math:`S_k = \mathrm{ReLU}(G^c_k) \odot A_k` with :math:`\alpha_k`. All
    four and ``"split"`` are equal where :math:`A \ge 0` (ReLU outputs, the
    paper's VGG16 setting), where the plain form reads

    .. math::
        L^c = \mathrm{ReLU}\Big(\sum_k w(\alpha_k)\, S_k\Big).

    The default differs from them even where :math:`A \ge 0`: there it counts
    :math:`\alpha_k` over the positions with a positive gradient only.

    ``mask="split-subtracted"`` is the default less LayerCAM's subtracted part
    :math:`D_k = \mathrm{ReLU}(G^c_k) \odot \mathrm{ReLU}(-A_k)` (a negative
    activation under a positive gradient), which carries the relevance on its
    own positions: :math:`- \frac{\mathrm{ReLU}(\alpha^D_k)}{\sum_{ij} D_k(i,j)}
    D_k` inside the sum, with :math:`\alpha^D_k = \sum_{ij} R_k(i,j)\,
    [D_k(i,j) > 0]`; where :math:`A \ge 0` it equals the default.

    The weights :math:`w`: ``"mass"`` :math:`\mathrm{ReLU}(\alpha_k) / \sum_{ij}
    S_k`; ``"geometric"`` its square root, so that each channel adds up to
    :math:`\sqrt{\mathrm{ReLU}(\alpha_k) \sum_{ij} S_k}`, the geometric mean of
    its relevance and its gradient-times-activation evidence; ``"sqrt"``
    :math:`\sqrt{\mathrm{ReLU}(\alpha_k)}`, ``"positive"``
    :math:`\mathrm{ReLU}(\alpha_k)`, ``"signed"`` :math:`\alpha_k` itself.

    The default was chosen on deletion/insertion scores (see the docs' results
    page). Earlier defaults stay reachable: the 0.1 release's
    ``mask="plain", channel_weights="positive"``, and the development defaults
    ``mask="sign-aware", channel_weights="sqrt"``, then
    ``mask="sign-aware", channel_weights="geometric"``, then ``mask="split"``
    (with the default ``channel_weights="mass"``).

    Method of CHENG Yan et al., "Study on Interpretable Shallow Class Activation
    Mapping Algorithm Based on Spatial Weights and Inter-Layer Relevance",
    Computer Science 52(6A), 2025, https://doi.org/10.11896/jsjkx.240500140 .
    Only the abstract is public; three readings are offered (``variant``):

    * ``"v1"``: :math:`R` propagated from the logits (Relevance-CAM's weights;
      by default CLRP's non-negative relevance);
    * ``"v2"``: :math:`R` from a single LRP step from the next layer's
      evidence, its mask (:math:`\mathrm{ReLU}(G^{l+1} A^{l+1})` by default,
      :math:`S^{+,l+1}` with ``mask="sign-aware"``) down to this layer; "next layer" is the next layer of the ``layer`` list in forward
      order, and the deepest layer of the list falls back to v1;
    * ``"v3"``: a 2-D mask :math:`M = \sum_k S_k` scaled to [0, 1],
      :math:`L^c = \mathrm{ReLU}(M \odot \sum_k \alpha_k A_k)`.

    Cost: one forward pass, one gradient and one relevance backward pass, each
    stopping at the (lowest) layer, shared by all layers of a list.
    """

    def has_convergence_delta(self) -> bool:
        r"""True: ``attribute(..., return_convergence_delta=True)`` also returns
        the relevance lost or created between the logits and the layer."""
        return True

    @log_usage()
    def attribute(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        target: TargetType = None,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        relu_attributions: bool = True,
        variant: Variant = "v1",
        initial_relevance: InitialRelevance = "clrp",
        channel_weights: ChannelWeights = "mass",
        return_convergence_delta: bool = False,
        check_conservation: bool = True,
        relu_activations: bool | None = None,
        mask: MaskKind | None = None,
    ) -> Tensor | list[Tensor] | tuple[Tensor | list[Tensor], Any]:
        r"""
        Args:

            inputs (Tensor or tuple[Tensor, ...]): Input for which the maps are
                        computed, N examples along dimension 0.
            target (int, list, Tensor, or None, optional): The class to explain,
                        one for all examples or one per example (list or 1-D
                        tensor). None explains the predicted class. Default: None
            additional_forward_args (Any, optional): Further arguments passed to
                        the model after the inputs. Default: None
            attribute_to_layer_input (bool, optional): Explain the layer's input
                        instead of its output. Default: False
            relu_attributions (bool, optional): Apply the final ReLU.
                        Default: True
            variant (str, optional): ``"v1"``, ``"v2"`` or ``"v3"`` (see the class
                        description). Default: ``"v1"``
            initial_relevance (str, optional): Relevance put on the logits:
                        ``"clrp"`` (contrastive LRP,
                        :math:`\max(0, R_{target} - R_{dual})` at the layer, the
                        dual spreading 1 over the other classes; one pass, since
                        the rules are linear in the relevance),
                        ``"contrastive"`` (+1 for the target, -1/C for the others)
                        or ``"target"`` (one-hot). Default: ``"clrp"``, chosen by
                        the benchmark (see the docs' results page).
            channel_weights (str, optional): ``"sqrt"`` uses the flatter
                        :math:`\sqrt{\mathrm{ReLU}(\alpha)}`, ``"positive"``
                        :math:`\mathrm{ReLU}(\alpha)`; ``"signed"`` keeps the sign
                        of :math:`\alpha` (channels with negative relevance then
                        subtract their mask); ``"geometric"`` uses
                        :math:`\sqrt{\mathrm{ReLU}(\alpha_k) / \sum_{ij} S_k(i,j)}`,
                        so that channel :math:`k` adds up to
                        :math:`\sqrt{\mathrm{ReLU}(\alpha_k) \sum_{ij} S_k(i,j)}`,
                        the geometric mean of its relevance and its LayerCAM
                        evidence (v3: of its term :math:`M \odot A_k`);
                        ``"mass"`` uses
                        :math:`\mathrm{ReLU}(\alpha_k) / \sum_{ij} S_k(i,j)`, so
                        that channel :math:`k` adds up to exactly its relevance
                        :math:`\mathrm{ReLU}(\alpha_k)`, spread by its mask.
                        Default: ``"mass"``, chosen by the benchmark (see
                        the docs' results page).
            return_convergence_delta (bool, optional): Also return, per layer, the
                        output relevance minus the relevance summed at the layer
                        (N values; with ``"clrp"`` the difference before the final ReLU). Default: False
            check_conservation (bool, optional): Warn, naming the operation, when
                        that difference exceeds 5% of the output's absolute
                        relevance. Turn off for layers inside a branch.
                        Default: True
            relu_activations (bool, optional): True is ``mask="sign-aware"``,
                        False ``mask="plain"``. Default: None (see ``mask``)
            mask (str, optional): ``"sign-aware"``: the mask and weights
                        :math:`S^+_k`, :math:`\bar\alpha^+_k` (see above);
                        ``"plain"``: :math:`S_k`, :math:`\alpha_k`;
                        ``"both-signs"``: the mask
                        :math:`S^\pm_k = \mathrm{ReLU}(G^c_k A_k)` and
                        :math:`\alpha_k` over all positions; ``"split"``: the
                        both-signs mask split into its positive-activation part
                        :math:`S^+_k` and negative-activation part
                        :math:`S^-_k = \mathrm{ReLU}(-G^c_k)\,\mathrm{ReLU}(-A_k)`,
                        each with weights from the relevance on its own
                        positions (:func:`split_terms`; not with ``"v3"``);
                        ``"split-gated"``: the split mask with each part's
                        weight from the relevance only where that part is
                        positive, :math:`\alpha^\pm_k = \sum_{ij} R_k(i,j)\,
                        [S^\pm_k(i,j) > 0]` (not with ``"v3"``);
                        ``"split-subtracted"``: ``"split-gated"`` less
                        LayerCAM's subtracted part :math:`D_k`, weighted by the
                        relevance on its own positions (see above; not with
                        ``"v3"``).
                        Give ``mask`` or
                        ``relu_activations``, not both. Default: None, which is
                        ``"split-gated"`` (``"both-signs"`` with
                        ``variant="v3"``), chosen by the benchmark (see the
                        docs' results page)

        Returns:
            *Tensor* or *list[Tensor]* of **attributions** (N x 1 x h x w per
            layer), and with ``return_convergence_delta`` a 2-tuple of the
            attributions and the **delta** (a tensor, or a list per layer).

        Examples::

            >>> net = torchvision.models.resnet50().eval()
            >>> shallow_cam = LayerShallowCam(net, [net.layer1, net.layer2])
            >>> x = torch.randn(2, 3, 224, 224)
            >>> maps = shallow_cam.attribute(x, target=[3, 7])   # [2x1x56x56, 2x1x28x28]
            >>> up = LayerAttribution.interpolate(maps[0], (224, 224), "bilinear")
        """
        mask_kind = _mask_kind(variant, mask, relu_activations)
        passes = self._relevance_passes(
            inputs,
            target,
            additional_forward_args,
            attribute_to_layer_input,
            initial_relevance,
            channel_weights,
            check_conservation,
            gradients=True,
            refine=_adjacent_layer_relevance(mask_kind) if variant == "v2" else None,
        )
        maps = []
        for a, g, r in zip(passes.activations, passes.gradients, passes.relevances):
            if mask_kind in SPLIT_MASKS:
                terms = split_terms(
                    a,
                    g,
                    r,
                    channel_weights,
                    gated=mask_kind != "split",
                    subtract=mask_kind == "split-subtracted",
                )
                maps.append(channel_sum(terms, relu_attributions))
                continue
            if mask_kind == "sign-aware":
                # Relevance on negative activations is not counted, and the
                # mask (and v3's activation) uses ReLU(A), computed once here.
                r = r.masked_fill(a < 0, 0.0)
                a = torch.relu(a)
            spatial = spatial_mask(
                a, g, "plain" if mask_kind == "sign-aware" else mask_kind
            )
            if variant == "v3":
                term = unit_range(spatial.sum(dim=1, keepdim=True)) * a
            else:
                term = spatial
            weights = inter_layer_weights(r, channel_weights, term)
            maps.append(channel_sum(weights * term, relu_attributions))
        return self._result(maps, passes, return_convergence_delta)


def _mask_kind(
    variant: Variant, mask: MaskKind | None, relu_activations: bool | None
) -> MaskKind:
    """The mask of ``attribute``'s options; the default is ``"split-gated"``, and
    ``"both-signs"`` with ``variant="v3"``, which has no per-channel mask to
    split."""
    check_choice("variant", variant, ("v1", "v2", "v3"))
    default = "both-signs" if variant == "v3" else "split-gated"
    mask_kind = resolve_mask(mask, relu_activations, default, (*MASKS, *SPLIT_MASKS))
    if mask_kind in SPLIT_MASKS and variant == "v3":
        raise ValueError(
            f"mask={mask_kind!r} weights the two sign parts of each channel's mask "
            "apart, and variant='v3' has no per-channel mask: use variant='v1' "
            f"or 'v2' with mask={mask_kind!r}, or another mask with 'v3'."
        )
    return mask_kind


def _adjacent_layer_relevance(mask_kind: MaskKind) -> RelevanceRefinement:
    """v2: one LRP step from the LayerCAM evidence of the next layer up (the
    next captured layer in forward order); the deepest keeps its v1 relevance."""

    def refine(
        engine: _Engine, passes: CamPasses, relevances: list[Tensor]
    ) -> list[Tensor]:
        captures = engine.captures
        order = sorted(range(len(captures)), key=lambda i: captures[i].order)
        for lower, upper in zip(order[:-1], order[1:]):
            evidence = spatial_mask(
                passes.activations[upper], passes.gradients[upper], mask_kind
            )
            (relevances[lower],) = engine.relevance(
                captures[upper].tensor, evidence, [captures[lower]], retain_graph=True
            )
        return relevances

    return refine
