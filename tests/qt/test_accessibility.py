"""Accessibility and platform conventions: every control has an accessible name, symbol-only buttons
say what they do, text keeps a contrast of 4.5:1 in both colour schemes, type follows the system
font size, and a light scheme follows the system beside the dark one."""

from __future__ import annotations

import re

import pytest
from PySide6.QtGui import QAccessible, QFont, QPalette
from PySide6.QtWidgets import QAbstractButton, QApplication, QLabel, QWidget

from studio.qt.app import theme
from studio.qt.common import a11y, style

pytestmark = pytest.mark.usefixtures("themed_app", "studio_home")

# Text colours and the backgrounds each is drawn on (the style sheet's pairs).
TEXT_ON = {
    "text": ["window", "panel", "base", "alt_base", "raised", "card", "menubar", "strip", "tab", "tooltip"],
    "text_strong": ["window", "panel", "base", "raised", "card", "tooltip", "welcome_card", "tab"],
    "text_muted": ["window", "panel", "card", "tab"],
    "text_dim": ["window", "panel", "base", "raised", "card", "strip", "tab", "menubar", "tooltip", "welcome"],
    "placeholder": ["base", "raised", "card", "panel"],
    "accent_soft": ["window", "panel", "base", "raised"],
    "error_text": ["window", "panel", "base", "card"],
    "ok": ["card", "panel"],
    "welcome_text": ["welcome", "welcome_card"],
    "accent_text": ["accent"],
    "error_box_text": ["error_box"],
    "token_chunks_text": ["token_chunks"],
    "token_over_text": ["token_over"],
}


def unnamed_controls(root: QWidget) -> list[str]:
    """Controls a screen reader would announce without a name (or by a bare symbol)."""
    for w in root.findChildren(QWidget):
        w.ensurePolished()
    bad = []
    for w in root.findChildren(QWidget):
        if not a11y.is_control(w) or w.isHidden():
            continue
        iface = QAccessible.queryAccessibleInterface(w)
        spoken = iface.text(QAccessible.Text.Name) if iface is not None else ""
        name = w.accessibleName() or (w.text() if isinstance(w, QAbstractButton) else "") or spoken
        if not name.strip() or a11y.symbol_only(name):
            bad.append(f"{type(w).__name__}#{w.objectName()} in {type(w.parentWidget()).__name__}: {name!r}")
    return bad


def test_every_control_in_the_window_and_its_dialogs_has_a_name(make_window, fake_engine, qtbot):
    w = make_window(engine_factory=fake_engine)
    for dock in w.plugin_docks.docks.values():  # the plugin panels too (tabs beside the Prompt panel)
        dock.raise_()
    w.plugin_docks.cn_panel.add_unit()  # a row added later is named as well
    w.prompt.image_input.show()
    qtbot.wait(20)  # the new row is laid out and shown
    assert unnamed_controls(w) == []
    w.model_setup.open_models()
    w.model_setup.open_device()
    w.plugin_docks.open_manager()
    w.plugin_docks.open_about()
    dialogs = [w.model_setup.models_dialog, w.model_setup.device_dialog, *w.plugin_docks._dialogs]
    for dlg in dialogs:
        qtbot.waitExposed(dlg)
        assert unnamed_controls(dlg) == [], type(dlg).__name__
        dlg.close()


def test_symbol_only_buttons_have_tooltips_and_are_named_by_them(make_window, fake_engine):
    w = make_window(engine_factory=fake_engine)
    symbols = [b for b in w.findChildren(QAbstractButton) if a11y.symbol_only(b.text())]
    assert len(symbols) >= 4  # ✕ (messages), ▲ ▼ (queue), ⇄ (swap size), ⟳ (LoRA rescan) …
    for b in symbols:
        b.ensurePolished()
        assert b.toolTip(), f"{b.text()!r} ({b.objectName()}) has no tooltip"
        assert b.accessibleName() and not a11y.symbol_only(b.accessibleName()), b.text()


@pytest.mark.parametrize("scheme", ["dark", "light"])
def test_text_contrast_is_at_least_4_5_to_1(scheme):
    colours = style.SCHEMES[scheme]
    low = [
        (fg, bg, round(style.contrast(colours[fg], colours[bg]), 2))
        for fg, backgrounds in TEXT_ON.items()
        for bg in backgrounds
        if style.contrast(colours[fg], colours[bg]) < 4.5
    ]
    assert low == []


def test_section_labels_and_placeholders_use_the_checked_colours():
    sheet = (theme.resources_dir() / "qt" / "studio.qss").read_text()
    assert not re.search(r"#[0-9a-fA-F]{6}\b", sheet)  # every colour is a scheme colour, checked above
    assert re.search(r"QLabel#Section \{ color: \$text_dim;", sheet)
    pal = QApplication.instance().palette()
    assert pal.color(QPalette.ColorRole.PlaceholderText).name() == style.colour("placeholder")


def test_type_follows_the_system_font_size(qtbot):
    app = QApplication.instance()
    before = QFont(app.font())
    try:
        big = QFont(before)
        big.setPointSizeF(14.0)
        app.setFont(big)
        theme.apply_theme(app, "dark")
        label, section = QLabel("plain"), QLabel("SECTION", objectName="Section")
        host = QWidget()
        for x in (label, section):
            x.setParent(host)
        qtbot.addWidget(host)
        host.show()
        assert label.font().pointSizeF() == pytest.approx(14.0)  # no fixed size overrides the system's
        assert section.font().pointSizeF() == pytest.approx(style.font_pt(theme.SIZES["pt_section"]))
        assert section.font().pointSizeF() > 11.0
    finally:
        app.setFont(before)
        theme.apply_theme(app, "dark")


def test_light_scheme_and_following_the_system(monkeypatch):
    app = QApplication.instance()
    try:
        assert theme.apply_theme(app, "light") == "light"
        window = app.palette().color(QPalette.ColorRole.Window)
        text = app.palette().color(QPalette.ColorRole.WindowText)
        assert window.lightness() > 200 and text.lightness() < 80
        assert "icons/light" in " ".join(theme.QDir.searchPaths("icons"))
        monkeypatch.setattr(theme, "system_scheme", lambda _app: "light")
        assert theme.apply_theme(app, "system") == "light"
        monkeypatch.setattr(theme, "system_scheme", lambda _app: "dark")
        theme._system_changed(app)  # the system switched to dark while the studio follows it
        assert style.scheme() == "dark" and app.palette().color(QPalette.ColorRole.Window).lightness() < 60
        theme.apply_theme(app, "light")
        theme._system_changed(app)  # a chosen scheme stays when the system switches
        assert style.scheme() == "light"
    finally:
        theme.apply_theme(app, "dark")


def test_theme_choice_is_a_view_menu_entry_and_is_kept(make_window, fake_engine):
    w = make_window(engine_factory=fake_engine)
    view = next(a.menu() for a in w.menuBar().actions() if a.text().replace("&", "") == "View")
    themes = next(a.menu() for a in view.actions() if a.menu() is not None and a.text() == "Theme")
    labels = [a.text() for a in themes.actions()]
    assert labels == ["Follow the system", "Dark", "Light"]
    try:
        w.set_theme("light")
        assert style.scheme() == "light" and w.settings.value(theme.THEME_KEY) == "light"
    finally:
        w.set_theme("dark")
