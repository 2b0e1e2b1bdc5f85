"""captum_shallowcam: shallow-layer class activation maps for Captum."""

__version__ = "0.1.0"
