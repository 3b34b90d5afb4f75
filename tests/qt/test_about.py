from studio import __version__


def test_about_shows_version_device_and_licences(qtbot, tmp_path, monkeypatch):
    from studio.qt.common import about

    dlg = about.AboutDialog(device="CPU · float32")
    qtbot.addWidget(dlg)
    text = dlg.findChildren(type(dlg.licences))[0].toPlainText()
    assert "torch" in text.lower() and "diffusers" in text.lower()
    labels = " ".join(w.text() for w in dlg.findChildren(about.QLabel))
    assert __version__ in labels and "CPU · float32" in labels
    (tmp_path / "THIRD_PARTY_LICENSES.txt").write_text("Bundled list\nfoo 1.0: MIT\n")
    monkeypatch.setattr(about, "resources_dir", lambda: tmp_path)
    assert about.licences_text().startswith("Bundled list")
