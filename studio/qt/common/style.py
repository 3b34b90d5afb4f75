"""The window's colours and type sizes, for every part of it that draws or styles itself.

Two schemes, dark and light; the one in use is chosen by `studio.qt.app.theme` (the system's
colour scheme unless the user picked one). Text colours are chosen to reach a contrast of at least
4.5:1 on the backgrounds they are used on (WCAG AA; `contrast()` measures it, tests check it).
Type follows the system font size: `font_pt(scale)` is a size relative to it, never a fixed size.
"""

from __future__ import annotations

from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import QApplication

DARK: dict[str, str] = {
    "window": "#1b1d23",
    "panel": "#20232a",
    "base": "#15171c",  # text fields, the canvas
    "alt_base": "#1c1f25",
    "raised": "#2c3039",  # buttons
    "raised_hover": "#363b46",
    "raised_pressed": "#414756",
    "raised_disabled": "#24272e",
    "card": "#23262e",  # framed groups (plugin rows, LoRA rows, ControlNet units), dock titles
    "menubar": "#17191e",
    "strip": "#1f2228",
    "tab": "#22252c",
    "selection": "#3a3f4b",
    "scroll_handle": "#3a3f4b",
    "tooltip": "#2a2e37",
    "separator": "#14161b",
    "border": "#30343e",
    "border_soft": "#2c3039",
    "border_strong": "#383d48",
    "border_tooltip": "#444a57",
    "text": "#d7dbe3",
    "text_strong": "#e6e9ef",
    "text_bright": "#ffffff",
    "text_muted": "#aeb4c2",
    "text_dim": "#949caf",  # section labels, hints, status: ≥ 4.5:1 on every background above
    "placeholder": "#949caf",
    "text_disabled": "#5d6370",  # disabled controls are exempt from the contrast rule
    "slider_handle": "#f1f3f7",
    "accent": "#e0894a",
    "accent_hover": "#eb9758",
    "accent_pressed": "#c9763c",
    "accent_border": "#f09a5a",
    "accent_text": "#17181c",  # text on the accent
    "accent_soft": "#f1b184",  # accent-coloured text (links, the Branch button)
    "progress": "#b8703c",
    "ok": "#7fc98f",
    "error_text": "#ee8a7c",
    "error_box_text": "#f0a49e",
    "error_box": "#3f2326",
    "warning_bar": "#3a2a20",
    "warning_bar_border": "#5a3d2a",
    "error_bar": "#3f2326",
    "error_bar_border": "#6a3338",
    "info_bar": "#22303d",
    "info_bar_border": "#2f4a60",
    "danger_hover": "#5a2f2d",
    "danger_border": "#8a4440",
    "token_chunks": "#8fb8e8",
    "token_chunks_text": "#1b1d23",
    "token_over": "#bf423c",
    "token_over_text": "#ffffff",
    "welcome": "#15171c",
    "welcome_card": "#1b1d23",
    "welcome_text": "#9aa1b0",
}

LIGHT: dict[str, str] = {
    "window": "#f3f4f7",
    "panel": "#eceef2",
    "base": "#ffffff",
    "alt_base": "#f6f7f9",
    "raised": "#e1e4ea",
    "raised_hover": "#d6dae2",
    "raised_pressed": "#c8ced9",
    "raised_disabled": "#eceef2",
    "card": "#f8f9fb",
    "menubar": "#e8eaef",
    "strip": "#e6e8ed",
    "tab": "#e1e4ea",
    "selection": "#c9d3e6",
    "scroll_handle": "#b4bac6",
    "tooltip": "#ffffff",
    "separator": "#cfd3db",
    "border": "#b9bfcb",
    "border_soft": "#d2d6de",
    "border_strong": "#aab1be",
    "border_tooltip": "#aab1be",
    "text": "#1f232b",
    "text_strong": "#15181e",
    "text_bright": "#000000",
    "text_muted": "#3c4350",
    "text_dim": "#555d6b",
    "placeholder": "#565e6c",
    "text_disabled": "#a0a6b1",
    "slider_handle": "#ffffff",
    "accent": "#e0894a",
    "accent_hover": "#e99a60",
    "accent_pressed": "#c9763c",
    "accent_border": "#c9763c",
    "accent_text": "#17181c",
    "accent_soft": "#9a4a15",
    "progress": "#e0894a",
    "ok": "#226a28",
    "error_text": "#b3261e",
    "error_box_text": "#8c1d18",
    "error_box": "#fbe1e0",
    "warning_bar": "#fbead9",
    "warning_bar_border": "#e6c29e",
    "error_bar": "#fbe1e0",
    "error_bar_border": "#e5aaa8",
    "info_bar": "#e0ebf7",
    "info_bar_border": "#a9c4e3",
    "danger_hover": "#f6d4d2",
    "danger_border": "#d98c88",
    "token_chunks": "#cfe0f5",
    "token_chunks_text": "#15181e",
    "token_over": "#b3261e",
    "token_over_text": "#ffffff",
    "welcome": "#eceef2",
    "welcome_card": "#ffffff",
    "welcome_text": "#3c4350",
}

SCHEMES = {"dark": DARK, "light": LIGHT}
_current: dict[str, str] = dict(DARK)
_scheme = "dark"


def set_scheme(scheme: str) -> None:
    """Make `scheme` ("dark" | "light") the one `colour()` answers from."""
    global _scheme
    _current.clear()
    _current.update(SCHEMES[scheme])
    _scheme = scheme


def scheme() -> str:
    return _scheme


def colour(name: str) -> str:
    """A colour of the scheme in use, as #rrggbb (for style sheets and rich text)."""
    return _current[name]


def qcolour(name: str) -> QColor:
    return QColor(_current[name])


def base_font_pt() -> float:
    """The system's (the application's default) font size in points."""
    app = QApplication.instance()
    size = QFont().pointSizeF() if not isinstance(app, QApplication) else app.font().pointSizeF()
    return size if size > 0 else 9.0


def font_pt(scale: float) -> float:
    """A type size `scale` times the system's, rounded to a quarter point."""
    return round(base_font_pt() * scale * 4) / 4


def _luminance(hex_colour: str) -> float:
    c = QColor(hex_colour)

    def channel(v: float) -> float:
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

    return 0.2126 * channel(c.redF()) + 0.7152 * channel(c.greenF()) + 0.0722 * channel(c.blueF())


def contrast(foreground: str, background: str) -> float:
    """The WCAG contrast ratio of two colours (1 … 21)."""
    a, b = sorted((_luminance(foreground), _luminance(background)), reverse=True)
    return (a + 0.05) / (b + 0.05)
