"""Layer attribution methods: LayerCam, LayerRelevanceCam, LayerShallowCam, the
CAM family they are compared with (Grad-CAM++, XGrad-CAM, Score-CAM,
Ablation-CAM, Group-CAM, Integrated Grad-CAM; Grad-CAM is Captum's
LayerGradCam), and fuse_layer_maps to combine the maps of several layers;
compute_layer_passes for the activations, gradients and relevances they are
built from."""

from captum_shallowcam.attr.fusion import fuse_layer_maps
from captum_shallowcam.attr.layer_ablation_cam import LayerAblationCam
from captum_shallowcam.attr.layer_cam import LayerCam
from captum_shallowcam.attr.layer_grad_cam_plus_plus import LayerGradCamPlusPlus
from captum_shallowcam.attr.layer_group_cam import LayerGroupCam
from captum_shallowcam.attr.layer_integrated_grad_cam import LayerIntegratedGradCam
from captum_shallowcam.attr.layer_relevance_cam import LayerRelevanceCam
from captum_shallowcam.attr.layer_score_cam import LayerScoreCam
from captum_shallowcam.attr.layer_shallow_cam import LayerShallowCam
from captum_shallowcam.attr.layer_xgrad_cam import LayerXGradCam
from captum_shallowcam.attr.passes import (
    CamPasses,
    channel_sum,
    compute_layer_passes,
    inter_layer_weights,
    spatial_mask,
    split_terms,
)
from captum_shallowcam.attr.perturbation_cam import (
    LayerPerturbationCam,
    PerturbationCall,
)
from captum_shallowcam.attr.weighted_cam import LayerWeightedCam

__all__ = [
    "LayerCam",
    "LayerRelevanceCam",
    "LayerShallowCam",
    "LayerGradCamPlusPlus",
    "LayerXGradCam",
    "LayerScoreCam",
    "LayerAblationCam",
    "LayerGroupCam",
    "LayerIntegratedGradCam",
    "LayerWeightedCam",
    "LayerPerturbationCam",
    "PerturbationCall",
    "fuse_layer_maps",
    "compute_layer_passes",
    "CamPasses",
    "spatial_mask",
    "split_terms",
    "inter_layer_weights",
    "channel_sum",
]
