"""Plugins in the window: plugin docks, the plugin manager, the LoRA and ControlNet panels."""
