"""The main window: it builds the panels of the other subpackages and wires them together;
app start, theme, window settings."""
