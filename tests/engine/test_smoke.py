"""`studio --smoke-test` (what the packaged build runs) passes on a working install and says why
it fails on a broken one."""

from studio.cli import main


def test_smoke_test_passes(tiny_sd15, monkeypatch, capsys):
    monkeypatch.setenv("STUDIO_DEMO_MODEL", str(tiny_sd15))
    assert main(["--smoke-test"]) == 0
    assert "smoke test passed" in capsys.readouterr().out


def test_smoke_test_reports_a_missing_demo_model(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("STUDIO_DEMO_MODEL", str(tmp_path / "gone"))
    assert main(["--smoke-test"]) == 1
    assert "smoke test FAILED" in capsys.readouterr().err
