"""captum_shallowcam: shallow-layer class activation maps for Captum.

The method of CHENG Yan et al. (Computer Science 52(6A), 2025) as a Captum layer
attribution, with LayerCAM and Relevance-CAM in the same API, and a
deletion/insertion metric to judge them.
"""

from captum_shallowcam.attr import (
    LayerCam,
    LayerRelevanceCam,
    LayerShallowCam,
    fuse_layer_maps,
)
from captum_shallowcam.attr.rules import ZPlusRule

__version__ = "0.1.0"

__all__ = [
    "LayerCam",
    "LayerRelevanceCam",
    "LayerShallowCam",
    "ZPlusRule",
    "fuse_layer_maps",
    "__version__",
]
