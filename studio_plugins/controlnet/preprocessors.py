"""Control-map preprocessors that run offline: Canny (OpenCV), HED (real weights), and what
controlnet-aux offers without downloads (content shuffle, standard lineart) when it is installed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from studio.plugin_api import PluginError

Preprocessor = Callable[[np.ndarray], np.ndarray]


def none(image: np.ndarray) -> np.ndarray:
    return image


def canny(image: np.ndarray, low: int = 100, high: int = 200) -> np.ndarray:
    import cv2

    edges = cv2.Canny(np.ascontiguousarray(image), low, high)
    return np.repeat(edges[..., None], 3, axis=2)


def hed(image: np.ndarray) -> np.ndarray:
    from .hed import hed_edges

    return hed_edges(image)


def _aux(name: str) -> Preprocessor | None:
    try:
        import controlnet_aux  # noqa: F401 — needs torchvision; absent in the lean install
    except Exception:  # noqa: BLE001
        return None

    def run(image: np.ndarray) -> np.ndarray:
        import controlnet_aux as aux
        from PIL import Image

        detector = {"shuffle": aux.ContentShuffleDetector, "lineart_standard": aux.LineartStandardDetector}[name]()
        try:
            out = detector(Image.fromarray(image))
        except Exception as exc:  # noqa: BLE001
            raise PluginError(f"the {name} preprocessor failed: {exc}") from None
        return np.asarray(out.convert("RGB").resize((image.shape[1], image.shape[0])))

    return run


# controlnet-aux detectors whose weights come from the Hub (lllyasviel/Annotators): offered when
# controlnet-aux is installed; without the weights (offline) they fail with a clear message.
HUB_DETECTORS = {
    "openpose": "OpenposeDetector",
    "depth_midas": "MidasDetector",
    "mlsd": "MLSDdetector",
    "normal_bae": "NormalBaeDetector",
    "lineart": "LineartDetector",
    "softedge_pidi": "PidiNetDetector",
}
ANNOTATORS = "lllyasviel/Annotators"


def _aux_hub(name: str, cls_name: str) -> Preprocessor:
    cache: dict[str, object] = {}

    def run(image: np.ndarray) -> np.ndarray:
        import controlnet_aux as aux
        from PIL import Image

        if "detector" not in cache:
            try:
                cache["detector"] = getattr(aux, cls_name).from_pretrained(ANNOTATORS)
            except Exception as exc:  # noqa: BLE001 — offline, or the weights are missing
                raise PluginError(
                    f"the {name} preprocessor needs its weights from the Hugging Face Hub ({ANNOTATORS}), "
                    f"which are not here ({exc.__class__.__name__}). Download them once online, "
                    "or use canny, hed, shuffle or lineart_standard, which work offline."
                ) from None
        detector: Any = cache["detector"]
        out = detector(Image.fromarray(image))
        return np.asarray(out.convert("RGB").resize((image.shape[1], image.shape[0])))

    return run


def available() -> dict[str, Preprocessor]:
    procs: dict[str, Preprocessor] = {"none": none, "canny": canny, "hed": hed}
    for name in ("shuffle", "lineart_standard"):
        fn = _aux(name)
        if fn is not None:
            procs[name] = fn
    if "shuffle" in procs:  # controlnet-aux is importable
        for name, cls_name in HUB_DETECTORS.items():
            procs[name] = _aux_hub(name, cls_name)
    return procs
