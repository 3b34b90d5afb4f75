"""ε- or v-prediction for an SD 2.x checkpoint whose file does not say (A1111's test of the UNet).

SD 2.x's 768-v, 512-base and 512-inpainting have the same shapes. studio.core.checkpoint reads what
the file says (a `v_pred` key, modelspec metadata, an A1111 .yaml beside it, its name, 9 input
channels); when nothing does, the UNet is asked: fed a flat latent (0.5 everywhere) and a flat
conditioning at the noisiest timestep, an ε model predicts noise close to its input, while a v
model's prediction (≈ −x₀ there) lies well below it. A1111 decides the same way and with the same
threshold (the mean of output − input below −1 is v). The user can always override it
(GenerationRequest.prediction_type, set in the Models dialog).
"""

from __future__ import annotations

import torch

THRESHOLD = -1.0


@torch.inference_mode()
def probe_is_v(unet) -> bool:
    """Whether the UNet behaves as a v-prediction model (one forward pass on an 8×8 latent)."""
    device, dtype = unet.device, unet.dtype
    width = int(unet.config.cross_attention_dim)
    channels = int(unet.config.in_channels)
    x = torch.full((1, channels, 8, 8), 0.5, device=device, dtype=dtype)
    cond = torch.full((1, 2, width), 0.5, device=device, dtype=dtype)
    out = unet(x, torch.tensor([999], device=device), encoder_hidden_states=cond).sample
    return float((out.float() - x[:, : out.shape[1]].float()).mean()) < THRESHOLD


def settle(pipe, source: str) -> tuple[str, str]:
    """(prediction type, what decided it) for a freshly loaded single-file SD 2.x pipeline; when only
    the default decided, the UNet is probed and the scheduler set to what it says."""
    current = str(pipe.scheduler.config.get("prediction_type", "epsilon"))
    if source != "default":
        return current, source
    found = "v_prediction" if probe_is_v(pipe.unet) else "epsilon"
    if found != current:
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, prediction_type=found)
    return found, "probe"
