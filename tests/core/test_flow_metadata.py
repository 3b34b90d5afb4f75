"""Provenance for FLUX.1: the A1111 text says the distilled guidance as Forge does, and Forge's and
ComfyUI's FLUX metadata read back into a recipe."""

from __future__ import annotations

import json

from studio.core.metadata import infotext, readers
from studio.core.metadata.recipe import a1111_infotext, a1111_params
from studio.core.request import GenerationRequest

FORGE = (
    "a lighthouse at dusk\nSteps: 20, Sampler: Euler, Schedule type: Simple, CFG scale: 1, "
    "Distilled CFG Scale: 3.5, Seed: 42, Size: 896x1152, Model hash: 0b6f3de4d1, "
    "Model: flux1-dev-bnb-nf4-v2, Version: f2.0.1v1.10.1-previous-224-g900196889, "
    "Module 1: ae, Module 2: clip_l, Module 3: t5xxl_fp16"
)


def test_distilled_guidance_written_as_forge_and_read_back(tmp_path):
    req = GenerationRequest.create(
        model=str(tmp_path / "flux1-dev.gguf"),
        prompt="a cat",
        steps=28,
        guidance_scale=3.5,
        scheduler="Euler",
        seed=3,
        text_encoders=(str(tmp_path / "clip_l.safetensors"), str(tmp_path / "t5xxl.safetensors")),
        vae=str(tmp_path / "ae.safetensors"),
    )
    params = a1111_params(req, {"guidance": "distilled"})
    assert params["CFG scale"] == "1" and params["Distilled CFG Scale"] == "3.5"
    assert [params[f"Module {i}"] for i in (1, 2, 3)] == ["ae", "clip_l", "t5xxl"]
    keys = list(params)
    assert keys.index("Distilled CFG Scale") == keys.index("CFG scale") + 1
    text = a1111_infotext(req, {"guidance": "distilled"})
    norm, _ = readers.from_a1111(text)
    assert norm["cfg_scale"] == 3.5 and norm["steps"] == 28
    sd = a1111_params(req.replace(text_encoders=(), vae=""), {"guidance": "cfg"})
    assert sd.get("Distilled CFG Scale") is None and sd["CFG scale"] == "3.5"  # SD and SD3 keep A1111's CFG


def test_reads_forge_flux_infotext():
    norm, notes = readers.from_a1111(FORGE)
    assert (norm["prompt"], norm["steps"], norm["sampler"], norm["seed"]) == ("a lighthouse at dusk", 20, "Euler", 42)
    assert norm["cfg_scale"] == 3.5 and (norm["width"], norm["height"]) == (896, 1152)
    req = readers.to_request(norm, notes)
    assert req is not None and req.guidance_scale == 3.5
    assert not any(infotext.DISTILLED_KEY in n for n in notes)


def _flux_comfy_graph() -> dict:
    return {
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox in snow", "clip": ["11", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["13", 0], "vae": ["10", 0]}},
        "10": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
        "11": {
            "class_type": "DualCLIPLoader",
            "inputs": {"clip_name1": "t5xxl_fp16.safetensors", "clip_name2": "clip_l.safetensors", "type": "flux"},
        },
        "12": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-dev.safetensors", "weight_dtype": "default"}},
        "13": {
            "class_type": "SamplerCustomAdvanced",
            "inputs": {
                "noise": ["25", 0],
                "guider": ["22", 0],
                "sampler": ["16", 0],
                "sigmas": ["17", 0],
                "latent_image": ["27", 0],
            },
        },
        "16": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "17": {
            "class_type": "BasicScheduler",
            "inputs": {"scheduler": "simple", "steps": 24, "denoise": 1, "model": ["12", 0]},
        },
        "22": {"class_type": "BasicGuider", "inputs": {"model": ["12", 0], "conditioning": ["26", 0]}},
        "25": {"class_type": "RandomNoise", "inputs": {"noise_seed": 1234}},
        "26": {"class_type": "FluxGuidance", "inputs": {"guidance": 3.0, "conditioning": ["6", 0]}},
        "27": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 1024, "height": 768, "batch_size": 1}},
    }


def test_reads_comfyui_flux_graph():
    norm, notes = readers.from_comfy_prompt(json.dumps(_flux_comfy_graph()))
    assert norm["prompt"] == "a red fox in snow" and norm["seed"] == 1234 and norm["steps"] == 24
    assert norm["cfg_scale"] == 3.0 and norm["sampler"] == "Euler"
    assert norm["model"] == "flux1-dev.safetensors" and (norm["width"], norm["height"]) == (1024, 768)
    assert readers.to_request(norm, notes).guidance_scale == 3.0


def test_reads_comfyui_ksampler_behind_flux_guidance():
    graph = _flux_comfy_graph()
    for k in ("13", "16", "17", "22", "25"):
        graph.pop(k)
    graph["3"] = {
        "class_type": "KSampler",
        "inputs": {
            "seed": 9,
            "steps": 20,
            "cfg": 1.0,
            "sampler_name": "euler",
            "scheduler": "simple",
            "denoise": 1.0,
            "model": ["12", 0],
            "positive": ["26", 0],
            "negative": ["6", 0],
            "latent_image": ["27", 0],
        },
    }
    norm, _ = readers.from_comfy_prompt(json.dumps(graph))
    assert norm["cfg_scale"] == 3.0 and norm["seed"] == 9 and norm["prompt"] == "a red fox in snow"
