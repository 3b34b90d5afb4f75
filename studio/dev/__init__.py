"""Developer tools: the procedural scenes, the demo-model trainer and its evaluation.

May import torch and diffusers (lazily, inside the functions that need them); never Qt.
"""
