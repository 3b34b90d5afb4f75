"""The engine: torch and diffusers, no Qt. Usable from scripts and the CLI without a display."""
