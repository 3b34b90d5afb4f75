"""`studio bench soak` runs and reports what it promises (a tiny N here; the real 200-image run is a
benchmark, outside the test suite's time budget)."""

from __future__ import annotations

import json

from studio.cli import main


def test_soak_reports_growth_and_the_model_switch(tiny_sd15, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
    code = main(
        [
            "bench",
            "soak",
            "--images",
            "4",
            "--warmup",
            "2",
            "--steps",
            "1",
            "--model",
            str(tiny_sd15),
            "--device",
            "cpu",
            "--json",
        ]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["images"] == out["saved"] == 4 and out["warmup"] == 2 and out["size"] == 64
    for key in ("rss_mb_after_warmup", "rss_mb_end", "rss_growth_pct", "rss_slope_mb_per_100_images", "ok"):
        assert key in out
    assert out["rss_mb_end"] > 50  # a real process's RSS, in MB
    switch = out["switch"]
    assert switch["cache_size"] == 1 and switch["a_mb"] > 50 and "return_pct" in switch
