"""Models: the Models menu and dialog (list, download), the first-run welcome page, the Device dialog."""
