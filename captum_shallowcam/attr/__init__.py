"""Layer attribution methods: LayerCam, LayerRelevanceCam, LayerShallowCam, and
fuse_layer_maps to combine the maps of several layers; compute_layer_passes for
the activations, gradients and relevances they are built from."""

from captum_shallowcam.attr.fusion import fuse_layer_maps
from captum_shallowcam.attr.layer_cam import LayerCam
from captum_shallowcam.attr.layer_relevance_cam import LayerRelevanceCam
from captum_shallowcam.attr.layer_shallow_cam import LayerShallowCam
from captum_shallowcam.attr.passes import CamPasses, compute_layer_passes

__all__ = [
    "LayerCam",
    "LayerRelevanceCam",
    "LayerShallowCam",
    "fuse_layer_maps",
    "compute_layer_passes",
    "CamPasses",
]
