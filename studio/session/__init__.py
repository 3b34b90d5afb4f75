"""What the window holds that needs no Qt: the step history, the mask canvas's undo history and image operations."""
