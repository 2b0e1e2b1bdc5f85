"""Moved to :mod:`captum_shallowcam.experiments.images`; this name keeps old
imports working (``from captum_shallowcam.images import sample_images``)."""

from captum_shallowcam.experiments.images import (
    DATA_DIR,
    SAMPLE_IMAGES,
    LabelledImage,
    read_image_folder,
    read_imagenet_val,
    sample_images,
)

__all__ = [
    "DATA_DIR",
    "SAMPLE_IMAGES",
    "LabelledImage",
    "read_image_folder",
    "read_imagenet_val",
    "sample_images",
]
