"""Every CLI command with bad inputs — missing, unreadable, empty, truncated, wrong type, unwritable,
out of range, bad encodings — exits 2 with one line on stderr, no traceback, and leaves nothing
half-written behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.cli import main

BAD_UTF8 = os.fsdecode(b"caf\xe9 \xff")  # what a Latin-1 terminal or file name hands Python
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_models):
    """Bad (and a few good) inputs, in a folder the test watches for anything left behind."""
    d = tmp_path_factory.mktemp("inputs")
    good = d / "good.png"
    Image.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(good)
    data = good.read_bytes()
    (d / "empty.png").write_bytes(b"")
    (d / "truncated.png").write_bytes(data[: len(data) // 2])
    (d / "text.png").write_text("this is not an image\n")
    (d / "folder.png").mkdir()
    (d / "empty.safetensors").write_bytes(b"")
    single = tiny_models("sd15", "single-file")
    (d / "truncated.safetensors").write_bytes(single.read_bytes()[:5000])
    (d / "text.safetensors").write_text("not weights")
    (d / "not-a-model").mkdir()
    (d / "afile.txt").write_text("a file where a folder should be")
    unreadable = d / "unreadable.png"
    unreadable.write_bytes(data)
    unreadable.chmod(0)
    return {"dir": d, "good": good, "model": tiny_models("sd15", "diffusers"), "single": single}


def _base(f) -> list[str]:
    return [
        "--model",
        str(f["model"]),
        "--prompt",
        "a red circle",
        "--size",
        "64x64",
        "--steps",
        "2",
        "--out",
        str(f["dir"] / "out" / "o.png"),
        "--preview",
        "none",
    ]


def _merge(base: list[str], extra: list[str]) -> list[str]:
    """`base` with the options `extra` gives again replaced by extra's values."""
    out = list(base)
    for flag in ("--model", "--prompt", "--size", "--steps", "--out"):
        if flag in extra and flag in out:
            i = out.index(flag)
            del out[i : i + 2]
    return out + extra


def gen(f, *extra: str) -> list[str]:
    return ["generate", *_merge(_base(f) + ["--no-gallery"], list(extra))]


def qadd(f, *extra: str) -> list[str]:
    return ["queue", "add", "--library", str(f["lib"]), *_merge(_base(f), list(extra))]


def P(f, name: str) -> str:
    return str(f["dir"] / name)


# (id, argv builder, words the one line must contain)
CASES = [
    # generate: the model
    ("gen-model-missing", lambda f: gen(f, "--model", P(f, "nope.safetensors")), "not found"),
    ("gen-model-empty", lambda f: gen(f, "--model", P(f, "empty.safetensors")), "empty.safetensors"),
    ("gen-model-truncated", lambda f: gen(f, "--model", P(f, "truncated.safetensors")), "truncated"),
    ("gen-model-wrong-type", lambda f: gen(f, "--model", P(f, "text.safetensors")), "text.safetensors"),
    ("gen-model-folder", lambda f: gen(f, "--model", P(f, "not-a-model")), "not-a-model"),
    ("gen-model-image", lambda f: gen(f, "--model", P(f, "good.png")), "good.png"),
    # generate: input images
    ("gen-init-missing", lambda f: gen(f, "--init", P(f, "nope.png")), "not found"),
    ("gen-init-empty", lambda f: gen(f, "--init", P(f, "empty.png")), "empty.png"),
    ("gen-init-truncated", lambda f: gen(f, "--init", P(f, "truncated.png")), "truncated.png"),
    ("gen-init-text", lambda f: gen(f, "--init", P(f, "text.png")), "text.png"),
    ("gen-init-folder", lambda f: gen(f, "--init", P(f, "folder.png")), "folder.png"),
    ("gen-init-unreadable", lambda f: gen(f, "--init", P(f, "unreadable.png")), "unreadable.png"),
    ("gen-mask-missing", lambda f: gen(f, "--init", str(f["good"]), "--mask", P(f, "nope.png")), "not found"),
    ("gen-mask-text", lambda f: gen(f, "--init", str(f["good"]), "--mask", P(f, "text.png")), "text.png"),
    # generate: adapters and other files named
    ("gen-lora-missing-path", lambda f: gen(f, "--lora", "/no/such/file.safetensors:1"), "not found"),
    ("gen-lora-missing-name", lambda f: gen(f, "--lora", "no-such-lora-name:0.5"), "not found"),
    ("gen-lora-weight", lambda f: gen(f, "--lora", "demo-striped:7"), "between -2 and 2"),
    ("gen-lora-wrong-type", lambda f: gen(f, "--lora", P(f, "text.safetensors") + ":1"), "text.safetensors"),
    ("gen-vae-missing", lambda f: gen(f, "--vae", P(f, "nope.safetensors")), "not found"),
    ("gen-taesd-missing", lambda f: gen(f, "--taesd", P(f, "nope")), "not found"),
    ("gen-cn-model-missing", lambda f: gen(f, "--controlnet", f"{P(f, 'nope')}:{f['good']}:canny:1"), "not found"),
    ("gen-cn-image-missing", lambda f: gen(f, "--controlnet", f"{f['model']}:{P(f, 'nope.png')}:canny:1"), "not found"),
    ("gen-cn-shape", lambda f: gen(f, "--controlnet", "just-one-part"), "--controlnet needs"),
    # generate: where it writes
    ("gen-out-proc", lambda f: gen(f, "--out", "/proc/nope/x.png"), "/proc/nope"),
    ("gen-out-under-a-file", lambda f: gen(f, "--out", P(f, "afile.txt") + "/x.png"), "afile.txt"),
    ("gen-out-a-folder", lambda f: gen(f, "--out", P(f, "folder.png")), "folder"),
    ("gen-out-suffix", lambda f: gen(f, "--out", P(f, "out.jpg")), ".png"),
    ("gen-previews-proc", lambda f: gen(f, "--previews-dir", "/proc/nope/steps"), "/proc/nope"),
    ("gen-previews-a-file", lambda f: gen(f, "--previews-dir", P(f, "afile.txt")), "afile.txt"),
    # generate: out of range and malformed numbers
    ("gen-steps-zero", lambda f: gen(f, "--steps", "0"), "steps"),
    ("gen-steps-huge", lambda f: gen(f, "--steps", "100000"), "steps"),
    ("gen-steps-text", lambda f: gen(f, "--steps", "many"), "--steps"),
    ("gen-cfg", lambda f: gen(f, "--cfg", "31"), "guidance_scale"),
    ("gen-cfg-end", lambda f: gen(f, "--cfg-end", "2"), "guidance_end"),
    ("gen-seed", lambda f: gen(f, "--seed", "-1"), "seed"),
    ("gen-batch", lambda f: gen(f, "--batch", "0"), "batch_size"),
    ("gen-size-zero", lambda f: gen(f, "--size", "0x0"), "width"),
    ("gen-size-odd", lambda f: gen(f, "--size", "13x64"), "multiple of 8"),
    ("gen-size-text", lambda f: gen(f, "--size", "big"), "--size must look like"),
    ("gen-strength", lambda f: gen(f, "--init", str(f["good"]), "--strength", "2"), "strength"),
    ("gen-strength-no-init", lambda f: gen(f, "--strength", "0.5"), "--init"),
    ("gen-outpaint", lambda f: gen(f, "--init", str(f["good"]), "--outpaint", "1,2"), "--outpaint"),
    ("gen-mask-blur", lambda f: gen(f, "--init", str(f["good"]), "--mask-blur", "-3"), "mask_blur"),
    ("gen-clip-skip", lambda f: gen(f, "--clip-skip", "99"), "clip_skip"),
    ("gen-scheduler", lambda f: gen(f, "--scheduler", "Heun++"), "unknown scheduler"),
    ("gen-memory", lambda f: gen(f, "--memory", "lots"), "--memory"),
    ("gen-no-prompt", lambda f: ["generate", "--out", P(f, "x.png")], "--prompt"),
    # generate: bad encodings
    ("gen-prompt-encoding", lambda f: gen(f, "--prompt", BAD_UTF8), "UTF-8"),
    ("gen-negative-encoding", lambda f: gen(f, "--negative", BAD_UTF8), "UTF-8"),
    ("gen-init-name-encoding", lambda f: gen(f, "--init", P(f, BAD_UTF8 + ".png")), "not found"),
    # queue add: every generate check, and its own
    ("qadd-model-missing", lambda f: qadd(f, "--model", P(f, "nope")), "not found"),
    ("qadd-init-truncated", lambda f: qadd(f, "--init", P(f, "truncated.png")), "truncated.png"),
    ("qadd-lora-missing", lambda f: qadd(f, "--lora", "/no/such/file.safetensors:1"), "not found"),
    ("qadd-out-proc", lambda f: qadd(f, "--out", "/proc/nope/x.png"), "/proc/nope"),
    ("qadd-steps", lambda f: qadd(f, "--steps", "0"), "steps"),
    ("qadd-prompt-encoding", lambda f: qadd(f, "--prompt", BAD_UTF8), "UTF-8"),
    ("qadd-attempts", lambda f: qadd(f, "--attempts", "0"), "--attempts"),
    ("qadd-no-gallery", lambda f: qadd(f, "--no-gallery"), "gallery"),
    ("qadd-library-proc", lambda f: ["queue", "add", *qadd(f)[2:], "--library", "/proc/nope/lib"], "/proc/nope"),
    # the rest of the queue
    ("qlist-library-proc", lambda f: ["queue", "list", "--library", "/proc/nope/lib"], "/proc/nope"),
    ("qlist-library-a-file", lambda f: ["queue", "list", "--library", P(f, "afile.txt")], "afile.txt"),
    ("qrun-library-proc", lambda f: ["queue", "run", "--library", "/proc/nope/lib"], "/proc/nope"),
    ("qrun-keep-every", lambda f: ["queue", "run", "--library", str(f["lib"]), "--keep-every", "-1"], "--keep-every"),
    ("qretry-unknown", lambda f: ["queue", "retry", "ffff0000", "--library", str(f["lib"])], "no queued job"),
    ("qretry-short", lambda f: ["queue", "retry", "ab", "--library", str(f["lib"])], "no queued job"),
    ("qcancel-unknown", lambda f: ["queue", "cancel", "ffff0000", "--library", str(f["lib"])], "no queued job"),
    ("qcancel-encoding", lambda f: ["queue", "cancel", BAD_UTF8, "--library", str(f["lib"])], "no queued job"),
    ("qclear-library-proc", lambda f: ["queue", "clear", "--library", "/proc/nope/lib"], "/proc/nope"),
    # the gallery
    (
        "gallery-since",
        lambda f: ["gallery", "--library", str(f["lib"]), "list", "--since", "yesterday-ish"],
        "not a date",
    ),
    ("gallery-kind", lambda f: ["gallery", "--library", str(f["lib"]), "list", "--kind", "collage"], "--kind"),
    ("gallery-limit", lambda f: ["gallery", "--library", str(f["lib"]), "list", "--limit", "-5"], "--limit"),
    ("gallery-show-unknown", lambda f: ["gallery", "--library", str(f["lib"]), "show", "ffff0000"], "no gallery image"),
    ("gallery-show-encoding", lambda f: ["gallery", "--library", str(f["lib"]), "show", BAD_UTF8], "no gallery image"),
    ("gallery-library-proc", lambda f: ["gallery", "--library", "/proc/nope/lib", "list"], "/proc/nope"),
    ("gallery-library-a-file", lambda f: ["gallery", "--library", P(f, "afile.txt"), "check"], "afile.txt"),
    ("gallery-bench-rows", lambda f: ["gallery", "bench", "--rows", "0"], "--rows"),
    # metadata
    ("meta-read-missing", lambda f: ["metadata", "read", P(f, "nope.png")], "nope.png"),
    ("meta-read-empty", lambda f: ["metadata", "read", P(f, "empty.png")], "empty.png"),
    ("meta-read-truncated", lambda f: ["metadata", "read", P(f, "truncated.png")], "truncated.png"),
    ("meta-read-text", lambda f: ["metadata", "read", P(f, "text.png")], "text.png"),
    ("meta-read-folder", lambda f: ["metadata", "read", P(f, "folder.png")], "folder.png"),
    ("meta-read-unreadable", lambda f: ["metadata", "read", P(f, "unreadable.png")], "unreadable.png"),
    ("meta-verify-missing", lambda f: ["metadata", "verify", P(f, "nope.png")], "nope.png"),
    ("meta-verify-folder", lambda f: ["metadata", "verify", P(f, "folder.png")], "folder.png"),
    ("meta-read-encoding", lambda f: ["metadata", "read", P(f, BAD_UTF8)], "no such file"),
    # models
    ("models-info-missing", lambda f: ["models", "info", P(f, "nope.safetensors")], "not found"),
    ("models-info-empty", lambda f: ["models", "info", P(f, "empty.safetensors")], "empty.safetensors"),
    ("models-info-truncated", lambda f: ["models", "info", P(f, "truncated.safetensors")], "truncated"),
    ("models-info-text", lambda f: ["models", "info", P(f, "text.safetensors")], "text.safetensors"),
    ("models-info-folder", lambda f: ["models", "info", P(f, "not-a-model")], "not a model folder"),
    ("models-scan-missing", lambda f: ["models", "scan", P(f, "nope")], "not found"),
    ("models-folders-add-missing", lambda f: ["models", "folders", "--add", P(f, "nope")], "Not a folder"),
    ("models-folders-add-file", lambda f: ["models", "folders", "--add", P(f, "afile.txt")], "Not a folder"),
    ("models-folders-remove", lambda f: ["models", "folders", "--remove", P(f, "nope")], "Not one of"),
    ("models-download-none", lambda f: ["models", "download"], "repository id"),
    ("models-download-to-proc", lambda f: ["models", "download", "a/b", "--to", "/proc/nope/m"], "/proc/nope"),
    # preprocess
    (
        "pre-unknown",
        lambda f: ["preprocess", "sharpen", str(f["good"]), "--out", P(f, "x.png")],
        "unknown preprocessor",
    ),
    ("pre-missing", lambda f: ["preprocess", "canny", P(f, "nope.png"), "--out", P(f, "x.png")], "nope.png"),
    ("pre-empty", lambda f: ["preprocess", "canny", P(f, "empty.png"), "--out", P(f, "x.png")], "empty.png"),
    ("pre-text", lambda f: ["preprocess", "canny", P(f, "text.png"), "--out", P(f, "x.png")], "text.png"),
    ("pre-out-proc", lambda f: ["preprocess", "canny", str(f["good"]), "--out", "/proc/nope/x.png"], "/proc/nope"),
    ("pre-no-out", lambda f: ["preprocess", "canny", str(f["good"])], "--out"),
    # upscale
    (
        "upscale-missing",
        lambda f: ["upscale", P(f, "nope.png"), "--model", P(f, "nope.safetensors"), "--out", P(f, "x.png")],
        "not found",
    ),
    (
        "upscale-text-image",
        lambda f: ["upscale", P(f, "text.png"), "--model", P(f, "nope.safetensors"), "--out", P(f, "x.png")],
        "not found",
    ),
    (
        "upscale-model-wrong-type",
        lambda f: ["upscale", str(f["good"]), "--model", P(f, "text.safetensors"), "--out", P(f, "x.png")],
        "text.safetensors",
    ),
    (
        "upscale-tile",
        lambda f: [
            "upscale",
            str(f["good"]),
            "--model",
            P(f, "text.safetensors"),
            "--out",
            P(f, "x.png"),
            "--tile",
            "-5",
        ],
        "--tile",
    ),
    # dev and bench
    ("tiny-out-proc", lambda f: ["dev", "tiny-model", "/proc/nope/tiny"], "/proc/nope"),
    ("tiny-arch", lambda f: ["dev", "tiny-model", P(f, "t"), "--arch", "sd9"], "--arch"),
    ("bench-overhead-runs", lambda f: ["bench", "overhead", "--runs", "0"], "--runs"),
    ("bench-unet-size", lambda f: ["bench", "unet", "--size", "13"], "--size"),
    ("bench-soak-images", lambda f: ["bench", "soak", "--images", "0"], "--images"),
    # the cluster (nothing answers on port 9 of this machine; no local cluster runs)
    ("cluster-up-workers", lambda f: ["cluster", "up", "--local", "--workers", "0"], "--workers"),
    ("cluster-up-not-local", lambda f: ["cluster", "up", "--workers", "2"], "--local"),
    ("cluster-status-nothing", lambda f: ["cluster", "status", "--cluster", "127.0.0.1:9"], "no ray cluster answers"),
    ("cluster-status-no-local", lambda f: ["cluster", "status"], "no local cluster is running"),
    ("cluster-bad-address", lambda f: ["cluster", "status", "--cluster", "127.0.0.1:port"], "not a cluster address"),
    ("cluster-tls-missing", lambda f: ["cluster", "status", "--tls-ca", P(f, "nope.pem")], "tls"),
    (
        "queue-run-no-local",
        lambda f: ["queue", "run", "--library", str(f["lib"]), "--cluster", "local"],
        "local cluster",
    ),
    ("bench-cluster-jobs", lambda f: ["bench", "cluster", "--jobs", "0", "--out", P(f, "b")], "--jobs"),
    # the command itself
    ("unknown-command", lambda f: ["paint"], "invalid choice"),
]


def _snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.mark.parametrize("case_id, build, words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_line_and_leaves_nothing(
    files, tmp_path, capsys, monkeypatch, case_id, build, words
):
    if "unreadable" in case_id and os.geteuid() == 0:
        pytest.skip("root reads files whatever their permissions")
    lib = tmp_path / "lib"
    files = {**files, "lib": lib}
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
    argv = build(files)
    before = _snapshot(files["dir"])
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own refusals (made one line by the studio's parser)
        code = exc.code
    out, err = capsys.readouterr()
    assert code == 2, f"exit {code}; stderr: {err!r}"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("studio: "), err
    assert words.lower() in lines[0].lower(), lines[0]
    assert "Traceback" not in out + err and out == ""
    assert _snapshot(files["dir"]) == before  # nothing made, nothing half-written
    assert not list(files["dir"].rglob("*.tmp"))


def test_the_lora_plugin_stays_enabled_after_a_typo(tiny_sd15, tmp_path, monkeypatch):
    """A LoRA path or name that is not there is the user's mistake: the run fails with "not found",
    and the LoRA plugin still works for the next run."""
    from studio.core.errors import StudioError
    from studio.core.request import GenerationRequest, LoraRef
    from studio.engine.engine import Engine

    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
    engine = Engine(device="cpu")
    base = GenerationRequest.create(model=str(tiny_sd15), prompt="x", steps=1, width=64, height=64, preview="none")
    for ref in (LoraRef(name="file", path="/no/such/file.safetensors"), LoraRef(name="no-such-lora")):
        with pytest.raises(StudioError, match="not found"):
            engine.generate(base.replace(loras=(ref,)))
        assert engine.plugins.records["lora"].enabled and not engine.plugins.records["lora"].error
    with pytest.raises(StudioError, match="not found"):
        engine.generate(base.replace(prompt="x <lora:/no/such/file:1>"))
    assert engine.plugins.records["lora"].enabled
    assert engine.generate(base).status == "done"


@pytest.mark.parametrize(
    "argv, words",
    [
        (["generate", "--prompt", "x", "--out", "/proc/nope/x.png"], "/proc/nope"),
        (["generate", "--prompt", "x", "--out", "OUT", "--lora", "/no/such/file.safetensors:1"], "not found"),
        (["generate", "--prompt", os.fsencode(BAD_UTF8), "--out", "OUT"], "UTF-8"),
    ],
)
def test_a_real_process_prints_one_line_and_no_traceback(tmp_path, argv, words):
    """The same through a real `studio` process (argv bytes included), as a user's shell runs it."""
    argv = [a.replace("OUT", str(tmp_path / "o.png")) if isinstance(a, str) else a for a in argv]
    env = {**os.environ, "STUDIO_HOME": str(tmp_path / "home"), "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "studio", *argv], env=env, capture_output=True, timeout=300)
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 2, err
    assert len(err.strip().splitlines()) == 1 and words in err and "Traceback" not in err
    assert proc.stdout == b"" and not (tmp_path / "o.png").exists()
    log = (tmp_path / "home" / "logs" / "studio.log").read_text()
    assert "refused" in log  # the log says what happened, for a bug report
