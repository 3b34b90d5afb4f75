"""Plain-Python vocabulary of the studio: no Qt, no torch (enforced by import-linter)."""
