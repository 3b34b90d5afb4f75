"""The gallery panel and its table model."""
