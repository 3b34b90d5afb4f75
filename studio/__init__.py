"""Studio: a local image-generation studio built on Hugging Face diffusers."""

__version__ = "0.1.0"
