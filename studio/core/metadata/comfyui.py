"""ComfyUI's metadata: the API `prompt` graph (KSampler graphs, and the SamplerCustomAdvanced
graphs FLUX and SD3 use) and, when a file has only that, the UI `workflow`, read into the studio's
normalised fields (`readers.empty()`), with notes on what could not be read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


# The normalised-field helpers live in readers, which imports this module: reach them at call time.
def empty(source: str) -> dict[str, Any]:
    from studio.core.metadata.readers import empty as make

    return make(source)


def _num(value: Any, kind: type = float) -> Any:
    from studio.core.metadata.readers import _num as number

    return number(value, kind)


def map_sampler(sampler: str | None, schedule: str | None = None) -> tuple[str | None, list[str]]:
    from studio.core.metadata.readers import map_sampler as mapped

    return mapped(sampler, schedule)


def _comfy_node_value(graph: dict[str, Any], ref: Any, want: str, depth: int = 0) -> Any:
    """Follow a ComfyUI API-graph input (a literal or a [node_id, slot] link) to a literal."""
    if depth > 32:
        return None
    if not (isinstance(ref, list) and len(ref) == 2 and str(ref[0]) in graph):
        return ref
    node = graph[str(ref[0])]
    inputs = node.get("inputs", {}) if isinstance(node, dict) else {}
    if want in inputs:
        return _comfy_node_value(graph, inputs[want], want, depth + 1)
    for alt in ("text", "text_g", "t5xxl", "string", "value", "conditioning", "clip", "model", "samples"):
        if alt in inputs:
            return _comfy_node_value(graph, inputs[alt], want, depth + 1)
    return None


def from_comfy_prompt(text: str) -> tuple[dict[str, Any], list[str]]:
    graph = json.loads(text)
    if not isinstance(graph, dict):
        raise ValueError("not a ComfyUI graph")
    out = empty("comfyui")
    notes: list[str] = []
    samplers = [
        (nid, n) for nid, n in graph.items()
        if isinstance(n, dict) and str(n.get("class_type", "")).startswith("KSampler")
        and n.get("class_type") != "KSamplerSelect"  # a sampler choice feeding SamplerCustomAdvanced
    ]  # fmt: skip
    if not samplers:
        return _comfy_custom_sampler(graph, out, notes)
    if len(samplers) > 1:
        notes.append(f"{len(samplers)} sampler nodes; read the first")
    inputs = samplers[0][1].get("inputs", {})
    sampler, sampler_notes = map_sampler(inputs.get("sampler_name"), inputs.get("scheduler"))
    notes += sampler_notes
    seed = inputs.get("seed", inputs.get("noise_seed"))
    out.update(
        steps=_num(inputs.get("steps"), int), cfg_scale=_num(inputs.get("cfg")), sampler=sampler,
        seed=_num(_comfy_node_value(graph, seed, "seed"), int),
        prompt=_comfy_node_value(graph, inputs.get("positive"), "text") or "",
        negative_prompt=_comfy_node_value(graph, inputs.get("negative"), "text") or "",
    )  # fmt: skip
    if not isinstance(out["prompt"], str):
        out["prompt"] = ""
    if not isinstance(out["negative_prompt"], str):
        out["negative_prompt"] = ""
    for node in graph.values():
        if not isinstance(node, dict):
            continue
        cls, ins = str(node.get("class_type", "")), node.get("inputs", {}) or {}
        if cls.startswith("CheckpointLoader") and out["model"] is None:
            out["model"] = ins.get("ckpt_name")
        elif cls.startswith("LoraLoader") and ins.get("lora_name"):
            out["loras"].append(
                {"name": Path(str(ins["lora_name"])).stem, "weight": _num(ins.get("strength_model")),
                 "hash": None}
            )  # fmt: skip
        elif "LatentImage" in cls and out["width"] is None:
            out["width"], out["height"] = (
                _num(ins.get("width"), int),
                _num(ins.get("height"), int),
            )
    if inputs.get("denoise") not in (None, 1, 1.0):
        out["denoising_strength"] = _num(inputs.get("denoise"))
    _comfy_models(graph, out)  # a KSampler at CFG 1 behind FluxGuidance: the guidance is FLUX's
    return out, notes


def _comfy_nodes(graph: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    return [n for n in graph.values() if isinstance(n, dict) and str(n.get("class_type", "")).startswith(prefix)]


def _comfy_custom_sampler(
    graph: dict[str, Any], out: dict[str, Any], notes: list[str]
) -> tuple[dict[str, Any], list[str]]:
    """ComfyUI's FLUX/SD3 graphs: SamplerCustomAdvanced fed by RandomNoise, KSamplerSelect,
    BasicScheduler and a guider (BasicGuider → FluxGuidance → CLIPTextEncode, or CFGGuider)."""
    custom = _comfy_nodes(graph, "SamplerCustom")
    if not custom:
        return out, ["no KSampler node in the ComfyUI graph"]
    ins = custom[0].get("inputs", {})

    def node(ref: Any) -> dict[str, Any]:
        return graph.get(str(ref[0]), {}) if isinstance(ref, list) and ref else {}

    noise = node(ins.get("noise")).get("inputs", {})
    sched = node(ins.get("sigmas")).get("inputs", {})
    pick = node(ins.get("sampler")).get("inputs", {})
    guider = node(ins.get("guider"))
    g_in = guider.get("inputs", {})
    sampler, sn = map_sampler(pick.get("sampler_name"), sched.get("scheduler"))
    notes += sn
    positive = g_in.get("conditioning", g_in.get("positive"))
    out.update(
        steps=_num(sched.get("steps"), int), sampler=sampler,
        seed=_num(_comfy_node_value(graph, noise.get("noise_seed", ins.get("noise_seed")), "noise_seed"), int),
        prompt=_comfy_node_value(graph, positive, "text") or "",
        negative_prompt=_comfy_node_value(graph, g_in.get("negative"), "text") or "",
    )  # fmt: skip
    if "cfg" in g_in:
        out["cfg_scale"] = _num(g_in.get("cfg"))
    _comfy_models(graph, out)
    return out, notes


def _comfy_models(graph: dict[str, Any], out: dict[str, Any]) -> None:
    """FLUX's guidance (FluxGuidance / CLIPTextEncodeFlux), the model a UNETLoader names, the size."""
    for n in _comfy_nodes(graph, "FluxGuidance") + _comfy_nodes(graph, "CLIPTextEncodeFlux"):
        value = _num(n.get("inputs", {}).get("guidance"))
        if value is not None:
            out["cfg_scale"] = value
            break
    for n in _comfy_nodes(graph, "CLIPTextEncodeFlux"):
        if not out["prompt"] and isinstance(n.get("inputs", {}).get("t5xxl"), str):
            out["prompt"] = n["inputs"]["t5xxl"]
    for n in _comfy_nodes(graph, "UNETLoader"):
        if out["model"] is None:
            out["model"] = n.get("inputs", {}).get("unet_name")
    for n in graph.values():
        cls = str(n.get("class_type", "")) if isinstance(n, dict) else ""
        if "LatentImage" in cls and out["width"] is None:
            ins = n.get("inputs", {}) or {}
            out["width"], out["height"] = (
                _num(ins.get("width"), int),
                _num(ins.get("height"), int),
            )


def from_comfy_workflow(text: str) -> tuple[dict[str, Any], list[str]]:
    """Best effort from the UI workflow alone (files saved without the API `prompt`)."""
    wf = json.loads(text)
    out, notes = empty("comfyui"), ["read from the ComfyUI workflow (no API prompt in the file)"]
    nodes = {n.get("id"): n for n in wf.get("nodes", []) if isinstance(n, dict)}
    links = {lk[0]: lk[1] for lk in wf.get("links", []) if isinstance(lk, list) and len(lk) >= 2}

    def upstream(node: dict[str, Any], name: str) -> dict[str, Any] | None:
        for inp in node.get("inputs", []) or []:
            if isinstance(inp, dict) and inp.get("name") == name and inp.get("link") in links:
                return nodes.get(links[inp["link"]])
        return None

    for node in nodes.values():
        typ, wv = str(node.get("type", "")), node.get("widgets_values") or []
        if typ.startswith("KSampler") and out["steps"] is None and isinstance(wv, list):
            if typ == "KSampler" and len(wv) >= 7:
                out["seed"], out["steps"], out["cfg_scale"] = (
                    _num(wv[0], int),
                    _num(wv[2], int),
                    _num(wv[3]),
                )
                out["sampler"], sn = map_sampler(str(wv[4]), str(wv[5]))
                notes += sn
            for name in ("positive", "negative"):
                src = upstream(node, name)
                if src and src.get("widgets_values"):
                    val = src["widgets_values"][0]
                    out["prompt" if name == "positive" else "negative_prompt"] = str(val)
        elif typ.startswith("CheckpointLoader") and wv and out["model"] is None:
            out["model"] = str(wv[0])
        elif "LatentImage" in typ and len(wv) >= 2 and out["width"] is None:
            out["width"], out["height"] = _num(wv[0], int), _num(wv[1], int)
        elif typ.startswith("LoraLoader") and len(wv) >= 2:
            out["loras"].append({"name": Path(str(wv[0])).stem, "weight": _num(wv[1]), "hash": None})
    return out, notes
