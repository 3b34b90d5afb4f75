"""The Edit tab: the mask canvas (view, toolbar, autosaved session) and the Prompt panel's Image input section."""
