"""Write a diffusers pipeline as one `.safetensors` in the original LDM (A1111 / Civitai) key layout.

This is the inverse of what `from_single_file` reads, so the tiny test models exercise the same
conversion a user's downloaded checkpoint goes through. Key rules (SD 1.x/2.x/XL):

UNet (`model.diffusion_model.`): level i, layer j of the down path is input block 1 + i·(L+1) + j
(resnet at .0, transformer at .1), the level's downsampler is input block 1 + i·(L+1) + L (.0.op);
the up path has L+1 layers per level at output block i·(L+1) + j, its upsampler after the last
layer's resnet (and transformer, if any). ResNet parts are renamed (norm1 → in_layers.0 …);
transformer blocks keep their names.
VAE (`first_stage_model.`): down_blocks → down, resnets → block, mid resnets → mid.block_1/2, the
mid attention → mid.attn_1 (q/k/v/proj_out as 1×1 convs); the decoder's up path is numbered in
reverse.
Text encoders: CLIP-L style (`cond_stage_model.transformer.text_model.` / SDXL
`conditioner.embedders.0.transformer.text_model.`) keep HF names; OpenCLIP style (SD 2.x
`cond_stage_model.model.`, SDXL `conditioner.embedders.1.model.`) fuse q/k/v into in_proj.
"""

from __future__ import annotations

import re
from pathlib import Path

RESNET_NAMES = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
VAE_RESNET_NAMES = {"conv_shortcut": "nin_shortcut"}
VAE_ATTN_NAMES = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _resnet(rest: str, names: dict[str, str]) -> str:
    for new, old in names.items():
        if rest.startswith(new + "."):
            return old + rest[len(new) :]
    return rest


def unet_key_to_ldm(key: str, layers_per_block: int, up_has_attn: list[bool]) -> str:
    L = layers_per_block
    simple = {
        "time_embedding.linear_1.": "time_embed.0.",
        "time_embedding.linear_2.": "time_embed.2.",
        "add_embedding.linear_1.": "label_emb.0.0.",
        "add_embedding.linear_2.": "label_emb.0.2.",
        "conv_in.": "input_blocks.0.0.",
        "conv_norm_out.": "out.0.",
        "conv_out.": "out.2.",
    }
    for new, old in simple.items():
        if key.startswith(new):
            return old + key[len(new) :]
    m = re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key)
    if m:
        i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        idx = 1 + i * (L + 1) + j
        if kind == "resnets":
            return f"input_blocks.{idx}.0.{_resnet(rest, RESNET_NAMES)}"
        return f"input_blocks.{idx}.1.{rest}"
    m = re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key)
    if m:
        return f"input_blocks.{1 + int(m[1]) * (L + 1) + L}.0.op.{m[2]}"
    m = re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key)
    if m:
        i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        idx = i * (L + 1) + j
        if kind == "resnets":
            return f"output_blocks.{idx}.0.{_resnet(rest, RESNET_NAMES)}"
        return f"output_blocks.{idx}.1.{rest}"
    m = re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.(.*)", key)
    if m:
        i = int(m[1])
        return f"output_blocks.{i * (L + 1) + L}.{2 if up_has_attn[i] else 1}.{m[2]}"
    m = re.match(r"mid_block\.resnets\.(\d+)\.(.*)", key)
    if m:
        return f"middle_block.{2 * int(m[1])}.{_resnet(m[2], RESNET_NAMES)}"
    m = re.match(r"mid_block\.attentions\.0\.(.*)", key)
    if m:
        return f"middle_block.1.{m[1]}"
    raise KeyError(f"no LDM name for UNet key {key}")


def vae_key_to_ldm(key: str, n_levels: int) -> str:
    for part in ("encoder", "decoder"):
        if not key.startswith(part + "."):
            continue
        rest = key[len(part) + 1 :]
        if rest.startswith("conv_norm_out."):
            return f"{part}.norm_out.{rest[len('conv_norm_out.') :]}"
        m = re.match(r"(down|up)_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", rest)
        if m:
            i = int(m[2]) if m[1] == "down" else n_levels - 1 - int(m[2])
            return f"{part}.{m[1]}.{i}.block.{m[3]}.{_resnet(m[4], VAE_RESNET_NAMES)}"
        m = re.match(r"(down|up)_blocks\.(\d+)\.(down|up)samplers\.0\.(.*)", rest)
        if m:
            i = int(m[2]) if m[1] == "down" else n_levels - 1 - int(m[2])
            return f"{part}.{m[1]}.{i}.{m[3]}sample.{m[4]}"
        m = re.match(r"mid_block\.resnets\.(\d+)\.(.*)", rest)
        if m:
            return f"{part}.mid.block_{int(m[1]) + 1}.{_resnet(m[2], VAE_RESNET_NAMES)}"
        m = re.match(r"mid_block\.attentions\.0\.(.*)", rest)
        if m:
            inner = m[1]
            for new, old in VAE_ATTN_NAMES.items():
                if inner.startswith(new + "."):
                    return f"{part}.mid.attn_1.{old}{inner[len(new) :]}"
        return f"{part}.{rest}"  # conv_in, conv_out
    return key  # quant_conv, post_quant_conv


def _text_model_key(key: str) -> str:
    """HF CLIP key with the `text_model.` prefix (transformers 5 drops it on CLIPTextModel)."""
    if key.startswith("text_model.") or key.startswith("text_projection"):
        return key
    return "text_model." + key


def clip_to_ldm(state: dict, prefix: str) -> dict:
    return {prefix + _text_model_key(k): v for k, v in state.items() if "position_ids" not in k}


def openclip_to_ldm(state: dict, prefix: str) -> dict:
    import torch

    state = {_text_model_key(k): v for k, v in state.items() if "position_ids" not in k}
    out = {}
    fixed = {
        "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
        "text_model.embeddings.position_embedding.weight": "positional_embedding",
        "text_model.final_layer_norm.weight": "ln_final.weight",
        "text_model.final_layer_norm.bias": "ln_final.bias",
    }
    for k, v in state.items():
        if k in fixed:
            out[prefix + fixed[k]] = v
        elif k == "text_projection.weight":
            out[prefix + "text_projection"] = v.T.contiguous()
    layer_ids = sorted({int(m[1]) for k in state if (m := re.match(r"text_model\.encoder\.layers\.(\d+)\.", k))})
    for n in layer_ids:
        src = f"text_model.encoder.layers.{n}."
        dst = f"{prefix}transformer.resblocks.{n}."
        for kind in ("weight", "bias"):
            out[dst + f"attn.in_proj_{kind}"] = torch.cat(
                [state[src + f"self_attn.{p}_proj.{kind}"] for p in ("q", "k", "v")]
            )
            out[dst + f"attn.out_proj.{kind}"] = state[src + f"self_attn.out_proj.{kind}"]
            out[dst + f"ln_1.{kind}"] = state[src + f"layer_norm1.{kind}"]
            out[dst + f"ln_2.{kind}"] = state[src + f"layer_norm2.{kind}"]
            out[dst + f"mlp.c_fc.{kind}"] = state[src + f"mlp.fc1.{kind}"]
            out[dst + f"mlp.c_proj.{kind}"] = state[src + f"mlp.fc2.{kind}"]
    return out


def pipeline_to_ldm(pipe) -> dict:
    """The pipeline's weights under LDM key names (tensors shared, not copied where possible)."""
    ucfg = pipe.unet.config
    up_has_attn = ["CrossAttn" in t for t in ucfg.up_block_types]
    sd = {}
    for k, v in pipe.unet.state_dict().items():
        sd["model.diffusion_model." + unet_key_to_ldm(k, ucfg.layers_per_block, up_has_attn)] = v
    n_levels = len(pipe.vae.config.block_out_channels)
    for k, v in pipe.vae.state_dict().items():
        name = vae_key_to_ldm(k, n_levels)
        if ".mid.attn_1." in name and name.endswith(".weight") and v.ndim == 2:
            v = v[:, :, None, None]  # LDM uses 1×1 convolutions there
        sd["first_stage_model." + name] = v
    te = pipe.text_encoder.state_dict()
    if hasattr(pipe, "text_encoder_2") and pipe.text_encoder_2 is not None:
        sd.update(clip_to_ldm(te, "conditioner.embedders.0.transformer."))
        sd.update(openclip_to_ldm(pipe.text_encoder_2.state_dict(), "conditioner.embedders.1.model."))
    elif pipe.unet.config.get("use_linear_projection"):  # SD 2.x: OpenCLIP text encoder
        sd.update(openclip_to_ldm(te, "cond_stage_model.model."))
    else:
        sd.update(clip_to_ldm(te, "cond_stage_model.transformer."))
    return sd


def save_ldm_checkpoint(pipe, path: str | Path) -> Path:
    from safetensors.torch import save_file

    sd = {k: v.detach().contiguous().clone() for k, v in pipeline_to_ldm(pipe).items()}
    path = Path(path)
    prediction = pipe.scheduler.config.get("prediction_type", "epsilon")
    meta = {"format": "pt", "modelspec.prediction_type": "v" if prediction == "v_prediction" else "epsilon"}
    save_file(sd, str(path), metadata=meta)
    return path
