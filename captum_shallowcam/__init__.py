"""captum_shallowcam: shallow-layer class activation maps for Captum.

The method of CHENG Yan et al. (Computer Science 52(6A), 2025) as a Captum layer
attribution, with LayerCAM, Relevance-CAM and the CAM family it is compared with
(Grad-CAM++, XGrad-CAM, Score-CAM, Ablation-CAM, Group-CAM, Integrated Grad-CAM)
in the same API, and a deletion/insertion metric to judge them.
"""

from captum_shallowcam.attr import (
    LayerAblationCam,
    LayerCam,
    LayerGradCamPlusPlus,
    LayerGroupCam,
    LayerIntegratedGradCam,
    LayerRelevanceCam,
    LayerScoreCam,
    LayerShallowCam,
    LayerXGradCam,
    fuse_layer_maps,
)
from captum_shallowcam.attr.rules import ZPlusRule

__version__ = "0.1.0"

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
    "ZPlusRule",
    "fuse_layer_maps",
    "__version__",
]
