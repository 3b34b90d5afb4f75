"""Samplers and schedule types by the names users know from A1111, Forge, ComfyUI and InvokeAI.

A recipe names a sampler (`GenerationRequest.scheduler`, A1111's "Sampler") and a schedule type
(`GenerationRequest.schedule_type`, A1111's "Schedule type", since A1111 1.9). Older A1111 files
and older recipes of this studio say both in one name ("DPM++ 2M Karras"); `split` reads those.
studio.engine.schedulers says which diffusers scheduler runs each one.

"Automatic" is the model's own noise schedule (its scheduler config's timestep spacing; ComfyUI's
"normal" and "simple" read as it); "Karras" and "Exponential" are those sigma schedules; "SGM
Uniform" is evenly spaced timesteps ending at the last one (diffusers' "trailing" spacing, as
diffusers documents it for A1111's sgm_uniform).
"""

from __future__ import annotations

import difflib
import re

SAMPLERS = (
    "Euler a", "Euler", "Heun", "LMS", "DPM2", "DPM2 a", "DPM++ 2S a", "DPM++ 2M", "DPM++ SDE",
    "DPM++ 2M SDE", "DPM++ 3M SDE", "DDIM", "PLMS", "UniPC", "LCM", "DDPM",
)  # fmt: skip
SCHEDULE_TYPES = ("Automatic", "Karras", "Exponential", "SGM Uniform")
AUTOMATIC = "Automatic"

# Samplers whose diffusers scheduler has no Karras/Exponential sigmas: they run Automatic or SGM Uniform.
_TIMESTEP_ONLY = {"Euler a", "DDIM", "PLMS", "LCM", "DDPM"}

# Names users have that the studio cannot run -> the closest one it can.
NOT_AVAILABLE = {
    "DPM fast": "DPM2", "DPM adaptive": "DPM++ 2M", "Restart": "Heun", "DPM++ 2M SDE Heun": "DPM++ 2M SDE",
    "Euler CFG++": "Euler", "Euler a CFG++": "Euler a", "DPM++ 2M CFG++": "DPM++ 2M", "DDIM CFG++": "DDIM",
    "Heun++": "Heun", "iPNDM": "PLMS", "iPNDM v": "PLMS", "DEIS": "UniPC", "UniPC BH2": "UniPC",
    "Res multistep": "DPM++ 2M", "ER SDE": "DPM++ 2M SDE", "SA solver": "DPM++ 2M SDE", "TCD": "LCM",
    "Gradient estimation": "Euler", "Seeds 2": "DPM++ SDE", "Seeds 3": "DPM++ SDE",
}  # fmt: skip

# ComfyUI's sampler_name / scheduler values.
COMFY_SAMPLERS = {
    "euler": "Euler", "euler_ancestral": "Euler a", "heun": "Heun", "lms": "LMS", "dpm_2": "DPM2",
    "dpm_2_ancestral": "DPM2 a", "dpmpp_2s_ancestral": "DPM++ 2S a", "dpmpp_2m": "DPM++ 2M",
    "dpmpp_sde": "DPM++ SDE", "dpmpp_sde_gpu": "DPM++ SDE", "dpmpp_2m_sde": "DPM++ 2M SDE",
    "dpmpp_2m_sde_gpu": "DPM++ 2M SDE", "dpmpp_3m_sde": "DPM++ 3M SDE", "dpmpp_3m_sde_gpu": "DPM++ 3M SDE",
    "ddim": "DDIM", "uni_pc": "UniPC", "lcm": "LCM", "ddpm": "DDPM",
    "dpm_fast": "DPM fast", "dpm_adaptive": "DPM adaptive", "heunpp2": "Heun++", "ipndm": "iPNDM",
    "ipndm_v": "iPNDM v", "deis": "DEIS", "uni_pc_bh2": "UniPC BH2", "euler_cfg_pp": "Euler CFG++",
    "euler_ancestral_cfg_pp": "Euler a CFG++", "dpmpp_2m_cfg_pp": "DPM++ 2M CFG++", "res_multistep": "Res multistep",
    "er_sde": "ER SDE", "sa_solver": "SA solver", "gradient_estimation": "Gradient estimation",
    "seeds_2": "Seeds 2", "seeds_3": "Seeds 3", "dpmpp_2m_sde_heun": "DPM++ 2M SDE Heun",
    "dpmpp_2m_sde_heun_gpu": "DPM++ 2M SDE Heun",
}  # fmt: skip
# "simple" (ComfyUI's, Forge's "Simple"): the model's own spacing, as it is for FLUX, where Forge writes it.
COMFY_SCHEDULERS = {"normal": AUTOMATIC, "simple": AUTOMATIC, "karras": "Karras", "exponential": "Exponential",
                    "sgm_uniform": "SGM Uniform"}  # fmt: skip
# Other spellings (lower case, letters and digits only, "+" read as "p"): InvokeAI, diffusers, old names.
_ALIASES = {
    "eulerancestral": "Euler a", "eulerdiscrete": "Euler", "eulerancestraldiscrete": "Euler a", "eulera": "Euler a",
    "kdpm2": "DPM2", "kdpm2a": "DPM2 a", "kdpm2ancestral": "DPM2 a", "dpm2ancestral": "DPM2 a",
    "heundiscrete": "Heun", "lmsdiscrete": "LMS", "dpmsolvermultistep": "DPM++ 2M", "dpmppmultistep": "DPM++ 2M",
    "flowmatcheulerdiscrete": "Euler", "flowmatchheundiscrete": "Heun",
    "dpmpp2s": "DPM++ 2S a", "dpmsolversinglestep": "DPM++ 2S a", "dpmsolversde": "DPM++ SDE", "dpmppsde": "DPM++ SDE",
    "pndm": "PLMS", "plms": "PLMS", "unipcmultistep": "UniPC", "unipc": "UniPC", "unipcbh2": "UniPC BH2",
    "ddpm": "DDPM", "lcm": "LCM", "ddim": "DDIM", "deis": "DEIS", "deismultistep": "DEIS", "tcd": "TCD",
    "dpmpp2mk": "DPM++ 2M Karras", "dpmpp2msdek": "DPM++ 2M SDE Karras", "dpmppsdek": "DPM++ SDE Karras",
    "eulerk": "Euler Karras", "heunk": "Heun Karras", "lmsk": "LMS Karras", "kdpm2k": "DPM2 Karras",
    "kdpm2ak": "DPM2 a Karras", "dpmpp3msdek": "DPM++ 3M SDE Karras",
}  # fmt: skip
_SUFFIXES = {
    "karras": "Karras",
    "exponential": "Exponential",
    "sgm uniform": "SGM Uniform",
    "sgm_uniform": "SGM Uniform",
}


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower().replace("+", "p"))


_BY_KEY = {_key(n): n for n in (*SAMPLERS, *NOT_AVAILABLE)}
_PLAIN = ("uniform", "normal", "default", "none", "")
_SCHEDULE_BY_KEY = {_key(s): s for s in SCHEDULE_TYPES} | dict.fromkeys(_PLAIN, AUTOMATIC)


def schedule_types(sampler: str) -> tuple[str, ...]:
    """The schedule types the studio runs `sampler` with."""
    if sampler in _TIMESTEP_ONLY:
        return (AUTOMATIC, "SGM Uniform")
    return SCHEDULE_TYPES


def split(name: str) -> tuple[str, str | None]:
    """ "DPM++ 2M Karras" → ("DPM++ 2M", "Karras"); a name without a schedule → (name, None).
    Names and schedules are matched loosely (case, spaces, "+"/"p") and returned as written here."""
    text = name.strip()
    if text.lower().startswith("k_"):  # A1111's old API names: k_euler_a, k_dpmpp_2m_karras
        text = text[2:]
    text = _ALIASES.get(_key(text), text)
    low = text.lower()
    for suffix, schedule in _SUFFIXES.items():
        if low.endswith((" " + suffix, "_" + suffix)):
            return sampler_name(text[: -len(suffix) - 1]), schedule
    return sampler_name(text), None


def sampler_name(name: str) -> str:
    """The studio's spelling of a sampler name (unchanged when it is not one the studio knows)."""
    key = _key(name)
    return _BY_KEY.get(key) or _ALIASES.get(key) or COMFY_SAMPLERS.get(name.strip().lower()) or name.strip()


def schedule_name(name: str | None) -> str | None:
    """The studio's spelling of a schedule type, or None for one it does not run."""
    if name is None:
        return AUTOMATIC
    low = name.strip().lower()
    return COMFY_SCHEDULERS.get(low) or _SCHEDULE_BY_KEY.get(_key(name))


def closest(name: str) -> str:
    """The sampler the studio runs that is nearest to `name` (by meaning where known, else spelling)."""
    ours = sampler_name(name)
    if ours in SAMPLERS:
        return ours
    if ours in NOT_AVAILABLE:
        return NOT_AVAILABLE[ours]
    keys = {_key(n): n for n in SAMPLERS}
    near = difflib.get_close_matches(_key(name), list(keys), n=1, cutoff=0.0)
    return keys[near[0]] if near else "Euler a"


def check(sampler: str, schedule: str) -> str | None:
    """None when the studio runs `sampler` with `schedule`, else why not, naming the closest it runs."""
    if sampler not in SAMPLERS:
        known = sampler in NOT_AVAILABLE or sampler in COMFY_SAMPLERS.values()
        return (
            f"unknown scheduler {sampler!r}{' (a sampler this studio cannot run)' if known else ''}; "
            f"the closest this studio runs is {closest(sampler)!r}"
        )
    if schedule not in SCHEDULE_TYPES:
        return f"the schedule type {schedule!r} is unknown; choose one of: {', '.join(SCHEDULE_TYPES)}"
    if schedule not in schedule_types(sampler):
        return (
            f"{sampler} runs only with the {' or '.join(schedule_types(sampler))} schedule here; "
            f"for {schedule}, the closest is {_with_schedule(sampler)} with {schedule}"
        )
    return None


def _with_schedule(sampler: str) -> str:
    return {"Euler a": "DPM2 a", "DDIM": "Euler", "PLMS": "LMS", "LCM": "Euler", "DDPM": "Euler a"}.get(
        sampler, "Euler"
    )


def resolve(sampler: str | None, schedule: str | None = None) -> tuple[str | None, str, list[str]]:
    """Any tool's sampler (+ schedule) → (the studio's sampler or None, its schedule type, notes on
    what could not be carried over)."""
    notes: list[str] = []
    if not sampler or not str(sampler).strip():
        return None, AUTOMATIC, ["no sampler given"]
    name, from_name = split(str(sampler))
    wanted = schedule_name(schedule) if schedule not in (None, "") else from_name or AUTOMATIC
    if schedule not in (None, "") and wanted is None:
        notes.append(f"schedule {schedule!r} has no equivalent here; the model's own schedule is used")
        wanted = from_name or AUTOMATIC
    if name not in SAMPLERS:
        near = closest(name)
        notes.append(f"sampler {sampler!r} is not available here; read as {near}, the closest")
        name = near
    if wanted not in schedule_types(name):
        notes.append(f"schedule {wanted} is not offered with {name}; its own schedule is used")
        wanted = AUTOMATIC
    return name, wanted, notes


def label(sampler: str, schedule: str) -> str:
    """One line for a sampler and its schedule: "DPM++ 2M Karras", "Euler a"."""
    return sampler if schedule == AUTOMATIC else f"{sampler} {schedule}"
