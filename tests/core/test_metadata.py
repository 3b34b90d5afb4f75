"""Provenance written into image files, and read back by this studio and from other tools."""

from __future__ import annotations

import hashlib
import io
import json
import zlib

import numpy as np
import pytest
from PIL import ExifTags, Image

from studio.core import hashing
from studio.core.metadata import export_image, infotext, read_metadata, read_metadata_bytes, recipe, verify, write_png
from studio.core.metadata.png import PARAMETERS_KEY, REQUEST_KEY, XMP_KEY, encode_png
from studio.core.metadata.readers import map_sampler
from studio.core.metadata.xmp import read_source_type
from studio.core.request import BranchRef, GenerationRequest, ImageRef, LoraRef


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
    for var in ("STUDIO_LIBRARY", "STUDIO_C2PA_CERT", "STUDIO_C2PA_KEY", "STUDIO_C2PA_ALG"):
        monkeypatch.delenv(var, raising=False)


def pixels(seed: int = 0, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


TRICKY_PROMPTS = [
    "a castle, at dawn, highly detailed",
    "portrait: a woman, style: oil painting",
    "a sign that says \"hello, world\" and 'hi'",
    "line one\nline two, with comma\nline three: colon",
    "(masterpiece:1.2), [bad:good:0.5], <lora:detail:0.7>",
    "unicode — café 東京 🚀",
]


def lora_file(path, seed: int, title: str = "a LoRA"):
    """A small safetensors file (its header's metadata says `title`)."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    save_file({"lora_unet_x.lora_down.weight": rng.standard_normal((4, 8)).astype(np.float32)}, str(path),
              metadata={"ss_output_name": title})  # fmt: skip
    return path


def addnet_hash(path) -> str:
    """A1111's "addnet" LoRA hash, computed here on its own: SHA-256 of what follows the header."""
    data = path.read_bytes()
    start = 8 + int.from_bytes(data[:8], "little")
    return hashlib.sha256(data[start:]).hexdigest()


def full_request(prompt: str, tmp_path) -> GenerationRequest:
    init = tmp_path / "input.png"
    Image.fromarray(pixels(9)).save(init)
    detail, ink = lora_file(tmp_path / "detail.safetensors", 1), lora_file(tmp_path / "ink.safetensors", 2)
    return GenerationRequest.create(
        model="my, model: v2.safetensors",
        prompt=prompt,
        negative_prompt='blurry, "bad" hands:\nsecond negative line',
        steps=31,
        guidance_scale=7.5,
        guidance_rescale=0.25,
        guidance_end=0.6,
        seed=4_000_000_001,
        width=640,
        height=384,
        scheduler="DPM++ 2M Karras",
        batch_size=1,
        clip_skip=1,
        init_image=ImageRef(path=str(init), sha256="11" * 32),
        strength=0.55,
        loras=(
            LoraRef(name="detail", path=str(detail), weight=0.7, sha256="ab" * 32),
            LoraRef(name="style, ink", path=str(ink), weight=-0.5),
        ),
        plugins={"example": {"x": [1, 2]}},
    )


@pytest.mark.parametrize("prompt", TRICKY_PROMPTS)
def test_every_field_round_trips_through_the_png(prompt, tmp_path):
    req = full_request(prompt, tmp_path)
    path = write_png(tmp_path / "out.png", pixels(), req, {"model_sha256": "0123456789abcdef" * 4})
    meta = read_metadata(path)
    assert meta.source == "studio"
    assert meta.request == req  # the full recipe, losslessly
    # The A1111 text parses back to exactly what was written.
    written = recipe.a1111_params(req, {"model_sha256": "0123456789abcdef" * 4})
    text = meta.raw[PARAMETERS_KEY]
    p, n, params = infotext.parse(text)
    assert p == recipe.a1111_prompt(req)  # the LoRAs as A1111 applies them: <lora:name:weight> tags
    assert p.endswith(req.prompt) and "<lora:style, ink:-0.5>" in p
    assert ("<lora:detail:0.7>" in p) and p.count("<lora:detail:") == 1
    assert n == req.negative_prompt
    assert params == {k: str(v) for k, v in written.items() if v is not None}
    assert params["Model hash"] == "0123456789"
    assert params["Sampler"] == "DPM++ 2M" and params["Schedule type"] == "Karras"
    assert params["Size"] == "640x384" and params["Seed"] == "4000000001"
    assert params["Denoising strength"] == "0.55" and params["CFG scale"] == "7.5" and params["CFG end"] == "0.6"
    assert "guidance 7.5 for the first 60% of the steps," in recipe.describe(req)
    assert (
        infotext.parse_hash_list(params["Lora hashes"])
        == {  # A1111 takes ':' and ',' out of names
            "detail": addnet_hash(tmp_path / "detail.safetensors")[:12],
            "style ink": addnet_hash(tmp_path / "ink.safetensors")[:12],
        }
    )
    # And the A1111 reader (without our JSON chunk) recovers the same generation settings.
    texts = {k: v for k, v in meta.raw.items() if k != REQUEST_KEY and k != XMP_KEY}
    from studio.core.metadata.readers import interpret

    a1111 = interpret(texts)
    assert a1111.source == "a1111"
    norm = a1111.normalised
    assert (norm["prompt"], norm["negative_prompt"]) == (p, req.negative_prompt)
    assert (norm["steps"], norm["sampler"], norm["cfg_scale"], norm["seed"]) == (31, "DPM++ 2M Karras", 7.5, req.seed)
    assert (norm["width"], norm["height"], norm["model"]) == (640, 384, "my, model: v2")
    # read back, each LoRA is applied once: from its tag in the prompt, not again from the request
    back = a1111.request
    assert back.prompt == p and back.loras == ()
    assert {(lo["name"], lo["weight"]) for lo in norm["loras"]} == {("detail", 0.7), ("style, ink", -0.5)}


def test_infotext_layout_and_quoting_match_a1111():
    text = infotext.build(
        "a, b", "", {"Steps": 20, "Sampler": "Euler a", "Model": "x, y", "Note": 'say "hi": now', "Skip": None}
    )
    assert text == 'a, b\nSteps: 20, Sampler: Euler a, Model: "x, y", Note: "say \\"hi\\": now"'
    assert infotext.parse(text)[2] == {"Steps": "20", "Sampler": "Euler a", "Model": "x, y", "Note": 'say "hi": now'}
    # Written by A1111 itself (pre-1.9 combined sampler name, extra keys we do not use).
    a1111 = (
        "masterpiece, 1girl <lora:ink:0.8>\nNegative prompt: lowres\n"
        "Steps: 28, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 123, Size: 512x768, "
        'Model hash: 6ce0161689, Model: v1-5-pruned, Lora hashes: "ink: 1a2b3c4d5e6f", '
        "Hires upscale: 2, Version: v1.10.1"
    )
    meta = read_metadata_bytes(_png_with_texts({"parameters": a1111}))
    norm = meta.normalised
    assert norm["sampler"] == "DPM++ 2M Karras" and norm["height"] == 768
    assert norm["loras"] == [{"name": "ink", "weight": 0.8, "hash": "1a2b3c4d5e6f"}]
    assert norm["hires"]["scale"] == 2 and meta.request.hires.scale == 2  # hires fix is carried over
    assert not any("Hires upscale" in note for note in meta.unmapped)
    assert meta.request is not None and meta.request.seed == 123


def test_sampler_mapping_reports_what_it_cannot_map():
    assert map_sampler("DPM++ 2M", "Karras") == ("DPM++ 2M Karras", [])
    assert map_sampler("dpmpp_2m", "karras")[0] == "DPM++ 2M Karras"
    assert map_sampler("euler_ancestral", "normal") == ("Euler a", [])
    assert map_sampler("euler_a")[0] == "Euler a"
    assert map_sampler("DPM++ SDE", "Karras") == ("DPM++ SDE Karras", [])
    assert map_sampler("euler", "exponential") == ("Euler Exponential", [])
    assert map_sampler("dpmpp_sde", "normal") == ("DPM++ SDE", [])
    ours, notes = map_sampler("euler_ancestral", "karras")  # diffusers has no Karras sigmas for Euler a
    assert ours == "Euler a" and "Karras" in notes[0]
    ours, notes = map_sampler("dpm_adaptive", "beta")
    assert ours == "DPM++ 2M" and any("beta" in n for n in notes) and any("closest" in n for n in notes)


def _xmp_source(path) -> str | None:
    return read_source_type(read_metadata(path).raw.get(XMP_KEY))


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("txt2img", "trainedAlgorithmicMedia"),
        ("img2img", "compositeWithTrainedAlgorithmicMedia"),
        ("inpaint", "compositeWithTrainedAlgorithmicMedia"),
        ("outpaint", "compositeWithTrainedAlgorithmicMedia"),
        ("branch", "trainedAlgorithmicMedia"),
    ],
)
def test_digital_source_type_per_kind(kind, expected, tmp_path):
    init = tmp_path / "in.png"
    Image.fromarray(pixels(3)).save(init)
    ref = ImageRef(path=str(init))
    fields = {
        "txt2img": {},
        "img2img": {"init_image": ref, "strength": 0.6},
        "inpaint": {"init_image": ref, "mask": ImageRef(path=str(init))},
        "outpaint": {"init_image": ref, "mask": ImageRef(path=str(init)), "plugins": {"outpaint": {"left": 64}}},
        "branch": {"branch": BranchRef(parent_id="run1", step=5)},
    }[kind]
    req = GenerationRequest.create(prompt="x", **fields)
    assert recipe.kind_of(req) == kind
    path = write_png(tmp_path / f"{kind}.png", pixels(), req, {})
    assert _xmp_source(path) == expected
    status = verify(path)
    assert status.state == "valid"
    assert status.digital_source_type == expected
    assert status.action == ("c2pa.edited" if expected.startswith("composite") else "c2pa.created")


@pytest.mark.parametrize("with_mask", [False, True])
def test_an_outpaint_request_is_recorded_as_outpaint_with_its_amounts_and_fill(tmp_path, with_mask):
    init = tmp_path / "in.png"
    Image.fromarray(pixels(3)).save(init)
    mask = {"mask": ImageRef(path=str(init))} if with_mask else {}
    req = GenerationRequest.create(
        prompt="x",
        init_image=ImageRef(path=str(init)),
        outpaint=(0, 0, 32, 8),
        outpaint_fill="mirror",
        width=64,
        height=40,
        **mask,
    )
    assert recipe.kind_of(req) == req.kind == "outpaint"  # not "inpaint", even with a mask painted on the picture
    text = recipe.describe(req)
    assert text.startswith("Outpainted around an input image")
    assert "0 px left, 0 px top, 32 px right, 8 px bottom" in text and "mirror fill" in text
    path = write_png(tmp_path / "out.png", pixels(), req, {})
    back = read_metadata(path).request
    assert back == req and back.outpaint == (0, 0, 32, 8) and back.outpaint_fill == "mirror"


def test_the_a1111_text_of_an_outpaint_says_its_amounts_and_fill_and_reads_back(tmp_path):
    from studio.core.metadata.readers import interpret

    init = tmp_path / "in.png"
    Image.fromarray(pixels(3)).save(init)
    req = GenerationRequest.create(
        prompt="a wide beach",
        init_image=ImageRef(path=str(init)),
        outpaint=(48, 0, 16, 8),
        outpaint_fill="noise",
        width=64,
        height=40,
    )
    path = write_png(tmp_path / "out.png", pixels(), req, {})
    meta = read_metadata(path)
    params = infotext.parse(meta.raw[PARAMETERS_KEY])[2]
    assert (
        params["Outpaint left"],
        params["Outpaint top"],
        params["Outpaint right"],
        params["Outpaint bottom"],
        params["Outpaint fill"],
    ) == ("48", "0", "16", "8", "noise")
    # the studio's A1111 reader alone (no JSON recipe beside it) reads them back, and does not call them unknown
    a1111 = interpret({PARAMETERS_KEY: meta.raw[PARAMETERS_KEY]})
    assert a1111.source == "a1111"
    assert a1111.normalised["outpaint"] == (48, 0, 16, 8) and a1111.normalised["outpaint_fill"] == "noise"
    assert not any(note.startswith("Outpaint") for note in a1111.unmapped)
    assert any("outpaint sizes kept aside" in note for note in a1111.unmapped)  # the input image is not in the file
    # an image that was not outpainted says nothing about it
    plain = recipe.a1111_infotext(req.replace(outpaint=None))
    assert "Outpaint" not in plain and "outpaint" not in interpret({PARAMETERS_KEY: plain}).normalised


@pytest.mark.parametrize("kind", ["inpaint", "outpaint"])
def test_the_a1111_text_of_an_inpaint_says_its_mask_settings_and_reads_back(tmp_path, kind):
    from studio.core.metadata.readers import interpret

    init = tmp_path / "in.png"
    Image.fromarray(pixels(3)).save(init)
    edit = {"mask": ImageRef(path=str(init))} if kind == "inpaint" else {"outpaint": (16, 0, 0, 0)}
    req = GenerationRequest.create(
        prompt="a green star",
        init_image=ImageRef(path=str(init)),
        strength=0.75,
        mask_blur=5,
        mask_grow=6,
        inpaint_area="only_masked",
        inpaint_padding=40,
        width=64,
        height=64,
        **edit,
    )
    path = write_png(tmp_path / "out.png", pixels(), req, {})
    text = read_metadata(path).raw[PARAMETERS_KEY]
    params = infotext.parse(text)[2]
    # A1111's keys with A1111's meaning ("Mask blur" is the Gaussian's sigma: half the studio's feather px) …
    assert (
        params["Denoising strength"],
        params["Mask blur"],
        params["Inpaint area"],
        params["Masked area padding"],
    ) == ("0.75", "2.5", "Only masked", "40")
    assert params["Mask grow"] == "6"  # … and the studio's own for what A1111 has no key for
    a1111 = interpret({PARAMETERS_KEY: text})  # the studio's A1111 reader alone reads them back
    assert a1111.source == "a1111"
    n = a1111.normalised
    assert (n["denoising_strength"], n["mask_blur"], n["mask_grow"], n["inpaint_area"], n["inpaint_padding"]) == (
        0.75,
        5,
        6,
        "only_masked",
        40,
    )
    assert not any(note.split(":")[0] in infotext.MASK_FIELDS.values() for note in a1111.unmapped)
    assert any("mask settings kept aside" in note for note in a1111.unmapped)
    # the whole picture: said, without the padding that only "Only masked" uses (as A1111 writes it)
    whole = infotext.parse(recipe.a1111_infotext(req.replace(inpaint_area="whole", mask_blur=8)))[2]
    assert whole["Inpaint area"] == "Whole picture" and "Masked area padding" not in whole and whole["Mask blur"] == "4"
    back = interpret({PARAMETERS_KEY: recipe.a1111_infotext(req.replace(inpaint_area="whole", mask_blur=8))})
    assert back.normalised["inpaint_area"] == "whole" and back.normalised["mask_blur"] == 8
    # img2img and txt2img have no mask: nothing about one
    for plain in (req.replace(mask=None, outpaint=None), GenerationRequest.create(prompt="x")):
        keys = infotext.parse(recipe.a1111_infotext(plain))[2]
        assert not set(keys) & set(infotext.MASK_FIELDS.values())


def test_a1111_mask_blur_is_the_sigma_of_the_studios_feather():
    """What makes "Mask blur" honest: A1111 blurs the mask with a Gaussian of that sigma, the studio's
    feather of `mask_blur` px is a Gaussian of sigma a1111_mask_blur(mask_blur)."""
    from PIL import ImageFilter

    from studio.engine.inpaint import feather

    mask = np.zeros((48, 48), np.uint8)
    mask[12:36, 16:30] = 255
    for px in (3, 8):
        want = np.asarray(Image.fromarray(mask).filter(ImageFilter.GaussianBlur(infotext.a1111_mask_blur(px))))
        assert np.array_equal(feather(mask, px), want)


def test_a1111_inpaint_text_from_a1111_itself_reads_in_the_studios_terms():
    from studio.core.metadata.readers import interpret

    text = (
        "a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, Denoising strength: 0.5, "
        "Mask blur: 4, Inpaint area: Only masked, Masked area padding: 32, Version: v1.10.1"
    )
    n = interpret({PARAMETERS_KEY: text}).normalised
    assert (n["mask_blur"], n["inpaint_area"], n["inpaint_padding"]) == (8, "only_masked", 32)
    assert "mask_grow" not in n  # A1111 does not grow masks: not said, not guessed
    odd = interpret(
        {PARAMETERS_KEY: text.replace("Only masked", "Somewhere else").replace("Mask blur: 4", "Mask blur: x")}
    )
    assert "inpaint_area" not in odd.normalised and "mask_blur" not in odd.normalised
    assert any(note.startswith("Inpaint area: Somewhere else") for note in odd.unmapped)


def test_c2pa_manifest_validates_and_tampering_is_caught(tmp_path):
    req = GenerationRequest.create(prompt="provenance", seed=7)
    path = write_png(tmp_path / "signed.png", pixels(), req, {"model_sha256": "ee" * 32})
    status = verify(path)
    assert status.state == "valid", status.detail
    assert status.generation["request"]["prompt"] == "provenance"
    assert status.generation["model_sha256"] == "ee" * 32
    assert status.software.startswith("studio")
    # The key was made on first use under config_dir().
    assert (tmp_path / "home" / "config" / "provenance" / "signer.key").exists()

    data = bytearray(path.read_bytes())
    idat = data.find(b"IDAT")
    data[idat + 8] ^= 0x01  # one pixel byte (CRC left stale as an editor that skips CRCs would)
    tampered = tmp_path / "tampered.png"
    tampered.write_bytes(bytes(data))
    bad = verify(tampered)
    assert bad.state == "invalid"
    assert any("dataHash" in f for f in bad.failures)

    # A metadata edit (prompt rewritten) is caught too: the text chunks are covered by the hash.
    text = path.read_bytes().replace(b"provenance", b"provenanCE")
    edited = tmp_path / "edited.png"
    edited.write_bytes(text)
    assert verify(edited).state == "invalid"

    plain = tmp_path / "plain.png"
    Image.fromarray(pixels()).save(plain)
    assert verify(plain).state == "missing"


def test_unsigned_png_still_carries_text_provenance(tmp_path):
    req = GenerationRequest.create(prompt="unsigned")
    path = write_png(tmp_path / "u.png", pixels(), req, {"sign": False})
    assert read_metadata(path).request == req
    assert verify(path).state == "missing"


@pytest.mark.parametrize("suffix", [".jpg", ".webp"])
def test_export_keeps_infotext_in_user_comment_and_xmp(suffix, tmp_path):
    req = GenerationRequest.create(prompt="export me, please: now", negative_prompt="ugly", seed=99)
    src = write_png(tmp_path / "src.png", pixels(), req, {})
    out = export_image(src, tmp_path / f"out{suffix}")
    with Image.open(out) as im:
        comment = im.getexif().get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.UserComment]
        xmp = im.info.get("xmp")
    assert comment[:8] == b"UNICODE\0"
    assert comment[8:].decode("utf-16-be") == read_metadata(src).raw[PARAMETERS_KEY]
    assert read_source_type(xmp) == "trainedAlgorithmicMedia"
    meta = read_metadata(out)
    assert meta.request == req
    assert meta.normalised["prompt"] == req.prompt
    assert verify(out).state == "valid"


def _png_with_texts(texts: dict[str, str]) -> bytes:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for k, v in texts.items():
        info.add_text(k, v)
    buf = io.BytesIO()
    Image.fromarray(pixels(size=8)).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def test_reads_comfyui_prompt_graph():
    graph = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
        "10": {
            "class_type": "LoraLoader",
            "inputs": {"lora_name": "ink.safetensors", "strength_model": 0.6, "model": ["4", 0]},
        },
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 640, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a fox, in snow", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {
            "seed": 8566257, "steps": 20, "cfg": 8.0, "sampler_name": "dpmpp_2m", "scheduler": "karras",
            "denoise": 1.0, "model": ["10", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
    }  # fmt: skip
    meta = read_metadata_bytes(_png_with_texts({"prompt": json.dumps(graph), "workflow": "{}"}))
    n = meta.normalised
    assert n["source"] == "comfyui"
    assert (n["prompt"], n["negative_prompt"], n["seed"], n["steps"]) == ("a fox, in snow", "blurry", 8566257, 20)
    assert (n["sampler"], n["cfg_scale"], n["width"], n["height"]) == ("DPM++ 2M Karras", 8.0, 512, 640)
    assert n["model"] == "sd15.safetensors" and n["loras"][0]["name"] == "ink"
    assert (meta.request.scheduler, meta.request.schedule_type) == ("DPM++ 2M", "Karras")


@pytest.mark.parametrize(
    ("sampler", "scheduler", "expected"),
    [
        ("dpmpp_sde", "normal", ("DPM++ SDE", "Automatic")),
        ("dpmpp_sde_gpu", "karras", ("DPM++ SDE", "Karras")),
        ("dpmpp_2m_sde", "exponential", ("DPM++ 2M SDE", "Exponential")),
        ("euler_ancestral", "sgm_uniform", ("Euler a", "SGM Uniform")),
        ("lms", "simple", ("LMS", "Automatic")),
        ("dpm_2_ancestral", "normal", ("DPM2 a", "Automatic")),
    ],
)
def test_comfyui_ksampler_names_read_as_a1111_samplers(sampler, scheduler, expected):
    """A ComfyUI image as ComfyUI writes it (API graph in `prompt`, UI graph in `workflow`)."""
    graph = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a fox", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {
            "seed": 1, "steps": 20, "cfg": 7.0, "sampler_name": sampler, "scheduler": scheduler, "denoise": 1.0,
            "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
    }  # fmt: skip
    meta = read_metadata_bytes(_png_with_texts({"prompt": json.dumps(graph), "workflow": "{}"}))
    assert (meta.request.scheduler, meta.request.schedule_type) == expected and not meta.unmapped


def test_a1111_sampler_texts_old_and_new_read_to_the_same_request():
    new = "a fox\nSteps: 20, Sampler: DPM++ 2M SDE, Schedule type: Karras, CFG scale: 7, Seed: 1, Size: 512x512"
    old = "a fox\nSteps: 20, Sampler: DPM++ 2M SDE Karras, CFG scale: 7, Seed: 1, Size: 512x512"
    a, b = (read_metadata_bytes(_png_with_texts({"parameters": t})).request for t in (new, old))
    assert a == b and (a.scheduler, a.schedule_type) == ("DPM++ 2M SDE", "Karras")


def test_reads_comfyui_workflow_only():
    wf = {
        "nodes": [
            {"id": 1, "type": "KSampler", "widgets_values": [42, "fixed", 25, 6.0, "uni_pc", "normal", 1.0],
             "inputs": [{"name": "positive", "link": 11}, {"name": "negative", "link": 12}]},
            {"id": 2, "type": "CLIPTextEncode", "widgets_values": ["a lighthouse"]},
            {"id": 3, "type": "CLIPTextEncode", "widgets_values": ["fog"]},
            {"id": 4, "type": "CheckpointLoaderSimple", "widgets_values": ["dream.safetensors"]},
        ],
        "links": [[11, 2, 0, 1, 1, "CONDITIONING"], [12, 3, 0, 1, 2, "CONDITIONING"]],
    }  # fmt: skip
    n = read_metadata_bytes(_png_with_texts({"workflow": json.dumps(wf)})).normalised
    assert (n["prompt"], n["negative_prompt"], n["seed"], n["sampler"]) == ("a lighthouse", "fog", 42, "UniPC")


def test_reads_invokeai_metadata():
    meta = {
        "positive_prompt": "a robot", "negative_prompt": "rust", "steps": 30, "cfg_scale": 7.5,
        "seed": 77, "width": 768, "height": 768, "scheduler": "dpmpp_2m_k",
        "model": {"name": "juggernaut", "hash": "blake3:abc", "base": "sdxl"},
        "loras": [{"model": {"name": "chrome"}, "weight": 0.5}], "app_version": "4.2.0",
    }  # fmt: skip
    n = read_metadata_bytes(_png_with_texts({"invokeai_metadata": json.dumps(meta)})).normalised
    assert n["source"] == "invokeai"
    assert (n["prompt"], n["sampler"], n["model"], n["model_hash"]) == (
        "a robot",
        "DPM++ 2M Karras",
        "juggernaut",
        "blake3:abc",
    )
    assert n["loras"] == [{"name": "chrome", "weight": 0.5, "hash": None}]


def test_reads_fooocus_json_scheme():
    params = {
        "prompt": "a cat", "negative_prompt": "", "steps": 30, "sampler": "dpmpp_2m_sde_gpu",
        "scheduler": "karras", "guidance_scale": 4.0, "seed": "12345", "resolution": "(1152, 896)",
        "base_model": "juggernautXL_v8", "base_model_hash": "aeb7e9e689", "styles": "['Fooocus V2']",
        "loras": [["sd_xl_offset_example-lora_1.0", 0.1, "4852686128"]], "version": "Fooocus v2.5.0",
    }  # fmt: skip
    meta = read_metadata_bytes(_png_with_texts({"parameters": json.dumps(params), "fooocus_scheme": "fooocus"}))
    n = meta.normalised
    assert n["source"] == "fooocus"
    assert (n["prompt"], n["seed"], n["width"], n["height"], n["cfg_scale"]) == ("a cat", 12345, 1152, 896, 4.0)
    assert n["sampler"] == "DPM++ 2M SDE Karras"  # ComfyUI's name for it (Fooocus runs ComfyUI's samplers)
    assert meta.request is not None and meta.request.width == 1152
    assert (meta.request.scheduler, meta.request.schedule_type) == ("DPM++ 2M SDE", "Karras")


def test_a1111_jpeg_user_comment_is_read():
    text = "a boat\nNegative prompt: waves\nSteps: 12, Sampler: Euler, CFG scale: 5, Seed: 3, Size: 512x512"
    exif = Image.Exif()
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.UserComment] = b"UNICODE\0" + text.encode("utf-16-be")
    buf = io.BytesIO()
    Image.fromarray(pixels(size=16)).save(buf, "JPEG", exif=exif.tobytes())
    n = read_metadata_bytes(buf.getvalue()).normalised
    assert (n["prompt"], n["negative_prompt"], n["steps"], n["sampler"]) == ("a boat", "waves", 12, "Euler")


def test_hash_cache_by_path_size_mtime(tmp_path, monkeypatch):
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"x" * 1000)
    calls = []
    real = hashing.sha256_file
    monkeypatch.setattr(hashing, "sha256_file", lambda p: calls.append(p) or real(p))
    first = hashing.file_sha256(f)
    assert hashing.file_sha256(f) == first and len(calls) == 1
    fresh = hashing.HashCache()  # a new process reads the cache file
    assert fresh.lookup(f) == first
    f.write_bytes(b"y" * 1001)
    assert hashing.file_sha256(f) != first and len(calls) == 2
    future = hashing.hash_in_background([f, tmp_path / "missing.bin"])
    assert future.result(timeout=10) == {str(f): real(f)}


def test_model_hash_computed_from_model_file(tmp_path):
    model = tmp_path / "tiny.safetensors"
    model.write_bytes(b"weights")
    req = GenerationRequest.create(model=str(model), prompt="m")
    path = write_png(tmp_path / "m.png", pixels(), req, {"sign": False})
    params = infotext.parse(read_metadata(path).raw[PARAMETERS_KEY])[2]
    assert params["Model hash"] == hashing.sha256_file(model)[:10]
    assert params["Model"] == "tiny"


def test_encode_png_rejects_wrong_arrays():
    from studio.core.errors import MetadataError

    with pytest.raises(MetadataError):
        encode_png(np.zeros((8, 8), np.float32), GenerationRequest.create(), {"sign": False})


def test_zlib_helper_sanity():
    # Guard for the hostile-input tests: a bomb really is tiny compressed.
    assert len(zlib.compress(b"\0" * (64 << 20), 9)) < 200_000


def test_bring_your_own_certificate_from_environment(tmp_path, monkeypatch):
    from studio.core.metadata.provenance import _make_identity

    own = tmp_path / "own"
    own.mkdir()
    _make_identity(own)  # stands in for a certificate from another CA
    monkeypatch.setenv("STUDIO_C2PA_CERT", str(own / "signer.pem"))
    monkeypatch.setenv("STUDIO_C2PA_KEY", str(own / "signer.key"))
    monkeypatch.setenv("STUDIO_C2PA_ALG", "es256")
    path = write_png(tmp_path / "own.png", pixels(), GenerationRequest.create(prompt="mine"), {})
    status = verify(path)
    assert status.state == "valid"
    assert not (tmp_path / "home" / "config" / "provenance").exists()  # no studio key was made
    monkeypatch.setenv("STUDIO_C2PA_KEY", str(tmp_path / "own" / "ca.pem"))  # not a key
    from studio.core.errors import ProvenanceError

    with pytest.raises(ProvenanceError):
        write_png(tmp_path / "bad.png", pixels(), GenerationRequest.create(prompt="x"), {})
