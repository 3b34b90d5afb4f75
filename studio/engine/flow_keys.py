"""FLUX.1 (BFL) and SD 3 (Stability MMDiT) key layouts ↔ diffusers', both ways, from shapes alone.

One table of rules per family: an original module, the diffusers module(s) it becomes, and how
its rows are split (fused q/k/v, FLUX single blocks' q/k/v + MLP, the final norm's shift/scale
halves which the two sides store in opposite order). Reading a downloaded file runs the rules
forward; the test kit runs them backward to write files exactly as BFL, ComfyUI and Stability
ship them (`ldm.py` does the same for SD 1.x/XL). Widths come from the tensors, never from the
full-size models' constants, so the tiny test models go through the same code as a real file.
The LoRA plugin reuses the rules for BFL/kohya FLUX LoRAs (a fused layer's down-projection is
shared by its parts; its up-projection is split by rows).

Works on any tensor type with torch.split/cat along the rows, GGUF's quantized parameters included
(quantized blocks run along a row, so a row split keeps them whole).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SWAP = "swap"  # the two halves stored (shift, scale) originally and (scale, shift) in diffusers


@dataclass(frozen=True)
class Rule:
    src: str  # original module name
    dst: tuple[str, ...]  # diffusers module name(s)
    split: str = ""  # "" (one to one) | "equal" (fused q/k/v) | "single" (q, k, v, mlp) | SWAP


def flux_rules(n_double: int, n_single: int, guidance: bool) -> list[Rule]:
    r = [
        Rule("time_in.in_layer", ("time_text_embed.timestep_embedder.linear_1",)),
        Rule("time_in.out_layer", ("time_text_embed.timestep_embedder.linear_2",)),
        Rule("vector_in.in_layer", ("time_text_embed.text_embedder.linear_1",)),
        Rule("vector_in.out_layer", ("time_text_embed.text_embedder.linear_2",)),
        Rule("txt_in", ("context_embedder",)),
        Rule("img_in", ("x_embedder",)),
        Rule("final_layer.linear", ("proj_out",)),
        Rule("final_layer.adaLN_modulation.1", ("norm_out.linear",), SWAP),
    ]
    if guidance:
        r += [
            Rule("guidance_in.in_layer", ("time_text_embed.guidance_embedder.linear_1",)),
            Rule("guidance_in.out_layer", ("time_text_embed.guidance_embedder.linear_2",)),
        ]
    for i in range(n_double):
        s, d = f"double_blocks.{i}.", f"transformer_blocks.{i}."
        r += [
            Rule(s + "img_mod.lin", (d + "norm1.linear",)),
            Rule(s + "txt_mod.lin", (d + "norm1_context.linear",)),
            Rule(s + "img_attn.qkv", tuple(d + f"attn.to_{x}" for x in "qkv"), "equal"),
            Rule(s + "txt_attn.qkv", tuple(d + f"attn.add_{x}_proj" for x in "qkv"), "equal"),
            Rule(s + "img_attn.norm.query_norm", (d + "attn.norm_q",)),
            Rule(s + "img_attn.norm.key_norm", (d + "attn.norm_k",)),
            Rule(s + "txt_attn.norm.query_norm", (d + "attn.norm_added_q",)),
            Rule(s + "txt_attn.norm.key_norm", (d + "attn.norm_added_k",)),
            Rule(s + "img_attn.proj", (d + "attn.to_out.0",)),
            Rule(s + "txt_attn.proj", (d + "attn.to_add_out",)),
            Rule(s + "img_mlp.0", (d + "ff.net.0.proj",)),
            Rule(s + "img_mlp.2", (d + "ff.net.2",)),
            Rule(s + "txt_mlp.0", (d + "ff_context.net.0.proj",)),
            Rule(s + "txt_mlp.2", (d + "ff_context.net.2",)),
        ]
    for i in range(n_single):
        s, d = f"single_blocks.{i}.", f"single_transformer_blocks.{i}."
        r += [
            Rule(s + "modulation.lin", (d + "norm.linear",)),
            Rule(s + "linear1", (d + "attn.to_q", d + "attn.to_k", d + "attn.to_v", d + "proj_mlp"), "single"),
            Rule(s + "norm.query_norm", (d + "attn.norm_q",)),
            Rule(s + "norm.key_norm", (d + "attn.norm_k",)),
            Rule(s + "linear2", (d + "proj_out",)),
        ]
    return r


def sd3_rules(n_layers: int, dual: set[int]) -> list[Rule]:
    r = [
        Rule("x_embedder.proj", ("pos_embed.proj",)),
        Rule("t_embedder.mlp.0", ("time_text_embed.timestep_embedder.linear_1",)),
        Rule("t_embedder.mlp.2", ("time_text_embed.timestep_embedder.linear_2",)),
        Rule("y_embedder.mlp.0", ("time_text_embed.text_embedder.linear_1",)),
        Rule("y_embedder.mlp.2", ("time_text_embed.text_embedder.linear_2",)),
        Rule("context_embedder", ("context_embedder",)),
        Rule("final_layer.linear", ("proj_out",)),
        Rule("final_layer.adaLN_modulation.1", ("norm_out.linear",), SWAP),
    ]
    for i in range(n_layers):
        s, d = f"joint_blocks.{i}.", f"transformer_blocks.{i}."
        last = i == n_layers - 1
        r += [
            Rule(s + "x_block.attn.qkv", tuple(d + f"attn.to_{x}" for x in "qkv"), "equal"),
            Rule(s + "context_block.attn.qkv", tuple(d + f"attn.add_{x}_proj" for x in "qkv"), "equal"),
            Rule(s + "x_block.attn.ln_q", (d + "attn.norm_q",)),
            Rule(s + "x_block.attn.ln_k", (d + "attn.norm_k",)),
            Rule(s + "context_block.attn.ln_q", (d + "attn.norm_added_q",)),
            Rule(s + "context_block.attn.ln_k", (d + "attn.norm_added_k",)),
            Rule(s + "x_block.attn.proj", (d + "attn.to_out.0",)),
            Rule(s + "x_block.adaLN_modulation.1", (d + "norm1.linear",)),
            # The last block's context branch only modulates (a continuous AdaLN, halves swapped).
            Rule(s + "context_block.adaLN_modulation.1", (d + "norm1_context.linear",), SWAP if last else ""),
            Rule(s + "x_block.mlp.fc1", (d + "ff.net.0.proj",)),
            Rule(s + "x_block.mlp.fc2", (d + "ff.net.2",)),
        ]
        if not last:
            r += [
                Rule(s + "context_block.attn.proj", (d + "attn.to_add_out",)),
                Rule(s + "context_block.mlp.fc1", (d + "ff_context.net.0.proj",)),
                Rule(s + "context_block.mlp.fc2", (d + "ff_context.net.2",)),
            ]
        if i in dual:
            r += [
                Rule(s + "x_block.attn2.qkv", tuple(d + f"attn2.to_{x}" for x in "qkv"), "equal"),
                Rule(s + "x_block.attn2.ln_q", (d + "attn2.norm_q",)),
                Rule(s + "x_block.attn2.ln_k", (d + "attn2.norm_k",)),
                Rule(s + "x_block.attn2.proj", (d + "attn2.to_out.0",)),
            ]
    return r


def _blocks(keys, pattern: str) -> int:
    found = {int(m[1]) for k in keys if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0


def rules_for(state_keys, arch: str, original: bool = True) -> list[Rule]:
    """The rules for a state dict's layout (keys without any `model.diffusion_model.` prefix)."""
    keys = list(state_keys)
    if arch == "flux":
        if original:
            return flux_rules(
                _blocks(keys, r"double_blocks\.(\d+)\."),
                _blocks(keys, r"single_blocks\.(\d+)\."),
                any(k.startswith("guidance_in.") for k in keys),
            )
        return flux_rules(
            _blocks(keys, r"transformer_blocks\.(\d+)\."),
            _blocks(keys, r"single_transformer_blocks\.(\d+)\."),
            any(k.startswith("time_text_embed.guidance_embedder.") for k in keys),
        )
    if original:
        n = _blocks(keys, r"joint_blocks\.(\d+)\.")
        dual = {int(m[1]) for k in keys if (m := re.match(r"joint_blocks\.(\d+)\.x_block\.attn2\.", k))}
    else:
        n = _blocks(keys, r"transformer_blocks\.(\d+)\.")
        dual = {int(m[1]) for k in keys if (m := re.match(r"transformer_blocks\.(\d+)\.attn2\.", k))}
    return sd3_rules(n, dual)


def _param(src_rule: Rule, suffix: str, original: bool) -> str:
    # Original FLUX RMS norms call their weight "scale"; everything else is weight/bias.
    if original and suffix == "weight" and src_rule.src.endswith(("query_norm", "key_norm")):
        return "scale"
    return suffix


def _sizes(rule: Rule, rows: int, hidden: int) -> list[int]:
    if rule.split == "equal":
        return [rows // len(rule.dst)] * len(rule.dst)
    if rule.split == "single":
        return [hidden, hidden, hidden, rows - 3 * hidden]
    return [rows // 2, rows // 2]  # SWAP


def to_diffusers(state: dict, arch: str) -> dict:
    """Original (BFL / Stability) keys → diffusers keys. Unknown keys are left out (returned apart
    by `leftover`). SD3's `pos_embed` is a plain tensor, not a module."""
    import torch

    state = dict(state)
    out: dict = {}
    if arch == "sd3" and "pos_embed" in state:
        out["pos_embed.pos_embed"] = state.pop("pos_embed")
    hidden = _hidden(state, arch, original=True)
    for rule in rules_for(state, arch, original=True):
        for suffix in ("weight", "bias"):
            key = f"{rule.src}.{_param(rule, suffix, True)}"
            if key not in state:
                continue
            t = state.pop(key)
            if not rule.split:
                out[f"{rule.dst[0]}.{suffix}"] = t
                continue
            parts = torch.split(t, _sizes(rule, t.shape[0], hidden), dim=0)
            if rule.split == SWAP:
                out[f"{rule.dst[0]}.{suffix}"] = torch.cat([parts[1], parts[0]], dim=0)
            else:
                for name, part in zip(rule.dst, parts):
                    out[f"{name}.{suffix}"] = part
    out.update({f"__leftover__.{k}": v for k, v in state.items()})
    return out


def leftover(converted: dict) -> list[str]:
    return [k.removeprefix("__leftover__.") for k in converted if k.startswith("__leftover__.")]


def strip_leftover(converted: dict) -> dict:
    return {k: v for k, v in converted.items() if not k.startswith("__leftover__.")}


def to_original(state: dict, arch: str) -> dict:
    """diffusers keys → original (BFL / Stability) keys: the inverse of `to_diffusers`."""
    import torch

    state = dict(state)
    out: dict = {}
    if arch == "sd3" and "pos_embed.pos_embed" in state:
        out["pos_embed"] = state.pop("pos_embed.pos_embed")
    for rule in rules_for(state, arch, original=False):
        for suffix in ("weight", "bias"):
            names = [f"{d}.{suffix}" for d in rule.dst]
            if not all(n in state for n in names):
                continue
            parts = [state.pop(n) for n in names]
            if rule.split == SWAP:
                a, b = torch.chunk(parts[0], 2, dim=0)
                t = torch.cat([b, a], dim=0)
            else:
                t = torch.cat(parts, dim=0) if len(parts) > 1 else parts[0]
            out[f"{rule.src}.{_param(rule, suffix, True)}"] = t
    if state:
        raise KeyError(f"no original {arch} name for: {', '.join(sorted(state)[:5])}")
    return out


def _hidden(state: dict, arch: str, original: bool) -> int:
    if arch == "flux":
        key = "img_in.weight" if original else "x_embedder.weight"
        return int(state[key].shape[0]) if key in state else 0
    return 0


# -- LoRAs ------------------------------------------------------------------------------------------
LORA_PREFIXES = ("diffusion_model.", "model.diffusion_model.", "base_model.model.")


def lora_format(keys) -> str:
    """kohya (`lora_unet_double_blocks_0_…`), bfl (original names, `lora_A/B` or `lora_down/up`,
    under `diffusion_model.` as ComfyUI and BFL save them) or diffusers (`transformer.…lora_A`)."""
    keys = list(keys)
    if any(k.startswith("lora_unet_") for k in keys):
        return "kohya"
    if any(
        k.startswith(LORA_PREFIXES) or k.startswith(("double_blocks.", "single_blocks.", "joint_blocks.")) for k in keys
    ):
        return "bfl"
    return "diffusers"


def lora_to_diffusers(state: dict, arch: str, hidden: int) -> dict:
    """A kohya or BFL-layout FLUX/SD3 LoRA as diffusers' `transformer.<module>.lora_A/B.weight`.

    A fused layer (q/k/v, FLUX single blocks' q/k/v/MLP) has one down-projection for all its parts
    and an up-projection whose rows are split like the layer's. kohya's alpha is folded into the
    up-projection (scale alpha / rank), so the result needs no alphas. Keys this table does not know
    (text-encoder LoRAs) are left out; `hidden` is the transformer's width (FLUX single blocks)."""
    import torch

    fmt = lora_format(state)
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, t in state.items():
        if fmt == "kohya":
            if not key.startswith("lora_unet_"):
                continue
            name, _, kind = key[len("lora_unet_") :].partition(".")
        else:
            m = re.match(
                r"^(?:diffusion_model\.|model\.diffusion_model\.|base_model\.model\.)?(.+?)\."
                r"(lora_A|lora_B|lora_down|lora_up|alpha)(?:\.weight)?$",
                key,
            )
            if m is None:
                continue
            name, kind = m[1], m[2]
        kind = kind.split(".")[0]
        modules.setdefault(name, {})[
            {"lora_down": "A", "lora_A": "A", "lora_up": "B", "lora_B": "B"}.get(kind, kind)
        ] = t
    if fmt == "kohya":
        by_name = {r.src.replace(".", "_"): r for r in _all_rules(arch)}
    else:
        by_name = {r.src: r for r in _all_rules(arch)}
    out: dict = {}
    for name, parts in modules.items():
        rule = by_name.get(name)
        if rule is None or "A" not in parts or "B" not in parts:
            continue
        a, b = parts["A"], parts["B"].clone()
        if "alpha" in parts:
            b = b * (float(parts["alpha"]) / a.shape[0])
        if not rule.split:
            chunks = [b]
        elif rule.split == SWAP:
            first, second = torch.chunk(b, 2, dim=0)
            chunks = [torch.cat([second, first], dim=0)]
        else:
            chunks = list(torch.split(b, _sizes(rule, b.shape[0], hidden), dim=0))
        for dst, chunk in zip(rule.dst, chunks):
            out[f"transformer.{dst}.lora_A.weight"] = a.contiguous()
            out[f"transformer.{dst}.lora_B.weight"] = chunk.contiguous()
    return out


def _all_rules(arch: str) -> list[Rule]:
    """Rules for up to 64 blocks of each kind (a LoRA names only the blocks it adapts)."""
    if arch == "flux":
        return flux_rules(64, 128, True)
    return sd3_rules(64, set(range(64)))
