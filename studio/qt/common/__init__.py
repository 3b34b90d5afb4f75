"""Pieces every part of the window uses (message bar, progress, flow layout, image conversion,
background tasks, About); they know no other subpackage."""
