r"""The base of the CAM methods that weight a layer's channels by extra forward passes.

Score-CAM, Ablation-CAM and Group-CAM differ only in the maps :math:`M_k` they
weight (the layer's channels, or groups of them) and in the weights
:math:`w^c_k` they compute by running the model on perturbed copies of each
example; the map is always

.. math::
    L^c = \mathrm{ReLU}\Big(\sum_k w^c_k M_k\Big)

A variant is a subclass of :class:`LayerPerturbationCam` that implements
:meth:`~LayerPerturbationCam.cam_weights` (and, when it takes options, checks
them in :meth:`~LayerPerturbationCam.check_options` and computes what its
weights share across layers in :meth:`~LayerPerturbationCam.prepare`), and
documents its ``attribute``. The base owns the rest: the input checks, the
classes to explain, the batching of the extra forwards
(:meth:`PerturbationCall.score_rows`) and the model's lifecycle around them.
Integrated Grad-CAM shares the prologue (:meth:`~LayerPerturbationCam.begin`)
and runs its own path of gradient passes.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from captum_shallowcam._captum_compat import TargetType
from captum_shallowcam._validation import format_target
from captum_shallowcam.attr._base import CamPasses, _check_inputs, _LayerCamBase
from captum_shallowcam.attr._perturbation import (
    RowBuilder,
    check_batch_size,
    format_forward_args,
    score_rows,
    single_image_batch,
    untouched_model,
)
from captum_shallowcam.attr.weighted_cam import weighted_channel_sum

__all__ = ["LayerPerturbationCam", "PerturbationCall"]


@dataclass
class PerturbationCall:
    r"""One ``attribute`` call of a perturbation CAM: the images (N x C x H x W),
    the class of each (N), the checked ``additional_forward_args`` and how to
    run the extra forwards; ``prepared`` is what
    :meth:`LayerPerturbationCam.prepare` returned."""

    forward_func: Callable
    images: Tensor
    targets: Tensor
    additional_forward_args: tuple | None
    max_examples_per_batch: int
    show_progress: bool
    attribute_to_layer_input: bool
    prepared: Any = None
    passes: CamPasses | None = field(default=None, repr=False)

    def score_rows(
        self, total: int, build: RowBuilder, desc: str, softmax: bool
    ) -> Tensor:
        r"""The target score of each of ``total`` rows built by ``build``
        (:func:`~._perturbation.score_rows`): the softmax probability when
        ``softmax``, else the logit."""
        return score_rows(
            self.forward_func,
            total,
            build,
            self.targets,
            self.additional_forward_args,
            self.max_examples_per_batch,
            self.show_progress,
            desc,
            softmax,
        )


class LayerPerturbationCam(_LayerCamBase):
    r"""Base of the perturbation CAM methods: one forward pass (with a gradient
    backward when :attr:`uses_gradients`) for the layer's activations and the
    classes, then :meth:`cam_weights` per layer, whose extra forwards run under
    ``torch.no_grad()`` with the model held and its buffers put back, and
    :math:`L^c = \mathrm{ReLU}(\sum_k w^c_k M_k)`."""

    #: Whether :meth:`cam_weights` reads the layer's gradient.
    uses_gradients = False

    def check_options(self, images: Tensor, **options: Any) -> None:
        r"""Refuses options of the method that cannot apply to ``images``,
        before anything is computed."""

    def prepare(self, images: Tensor, **options: Any) -> Any:
        r"""What :meth:`cam_weights` needs for every layer (e.g. a blurred copy
        of the images), computed once per call before the first pass."""
        return None

    def cam_weights(
        self,
        call: PerturbationCall,
        layer: nn.Module,
        activation: Tensor,
        gradient: Tensor | None,
        **options: Any,
    ) -> tuple[Tensor, Tensor]:
        r"""The maps :math:`M` (N x K x h x w) and their weights :math:`w^c`
        (N x K) for one layer, from its activation (and gradient)."""
        raise NotImplementedError

    def begin(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        target: TargetType,
        additional_forward_args: Any,
        attribute_to_layer_input: bool,
        max_examples_per_batch: int,
        show_progress: bool,
        first_pass: bool = True,
        **options: Any,
    ) -> PerturbationCall:
        r"""The checks and the first pass every perturbation CAM starts with.
        With ``first_pass=False`` (a method whose own passes need only the
        classes) the pass runs only when ``target`` is None, for the predicted
        classes; a given ``target`` is formatted and the inputs checked as the
        pass would, the classes' range is left to the method's passes (it needs
        the model's output), and ``passes`` is None."""
        images = single_image_batch(inputs, type(self).__name__)
        self.check_options(images, **options)
        batch_size = check_batch_size(max_examples_per_batch)
        args = format_forward_args(additional_forward_args, images.shape[0])
        prepared = self.prepare(images, **options)
        passes = None
        if first_pass or target is None:
            passes = self._passes(
                images,
                target,
                additional_forward_args,
                attribute_to_layer_input,
                gradients=self.uses_gradients,
            )
            targets = passes.targets
        else:
            _check_inputs(images, relevance=False)
            given = format_target(target, images.shape[0], images.device)
            assert given is not None
            targets = given
        return PerturbationCall(
            self.forward_func,
            images,
            targets,
            args,
            batch_size,
            show_progress,
            attribute_to_layer_input,
            prepared,
            passes,
        )

    def _weighted_maps(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        target: TargetType,
        additional_forward_args: Any,
        attribute_to_layer_input: bool,
        relu_attributions: bool,
        max_examples_per_batch: int,
        show_progress: bool,
        **options: Any,
    ) -> Tensor | list[Tensor]:
        call = self.begin(
            inputs,
            target,
            additional_forward_args,
            attribute_to_layer_input,
            max_examples_per_batch,
            show_progress,
            **options,
        )
        passes = call.passes
        assert passes is not None
        gradients = passes.gradients or [None] * len(passes.activations)
        maps = []
        with untouched_model(self.forward_func):
            for layer, activation, gradient in zip(
                self._layers, passes.activations, gradients
            ):
                channel_maps, weights = self.cam_weights(
                    call, layer, activation, gradient, **options
                )
                maps.append(
                    weighted_channel_sum(channel_maps, weights, relu_attributions)
                )
        return self._format_result(maps)
