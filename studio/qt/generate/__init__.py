"""Generating: the Prompt panel, the run controller and its engine thread, the queue, the steps
strip and the result canvas."""
