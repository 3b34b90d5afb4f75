"""First-party plugins, built only on `studio.plugin_api` as a third-party plugin would be."""
