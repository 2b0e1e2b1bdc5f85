"""Layer attribution methods: LayerCam, LayerRelevanceCam, LayerShallowCam."""

from captum_shallowcam.attr.layer_cam import LayerCam
from captum_shallowcam.attr.layer_relevance_cam import LayerRelevanceCam
from captum_shallowcam.attr.layer_shallow_cam import LayerShallowCam

__all__ = ["LayerCam", "LayerRelevanceCam", "LayerShallowCam"]
