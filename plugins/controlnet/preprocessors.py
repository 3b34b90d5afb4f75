"""Control-map preprocessors that run offline: Canny (OpenCV), HED (real weights), and what
controlnet-aux offers without downloads (content shuffle, standard lineart) when it is installed."""

from __future__ import annotations

from collections.abc import Callable

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
        from PIL import Image

        import controlnet_aux as aux

        detector = {"shuffle": aux.ContentShuffleDetector, "lineart_standard": aux.LineartStandardDetector}[name]()
        try:
            out = detector(Image.fromarray(image))
        except Exception as exc:  # noqa: BLE001
            raise PluginError(f"the {name} preprocessor failed: {exc}") from None
        return np.asarray(out.convert("RGB").resize((image.shape[1], image.shape[0])))

    return run


def available() -> dict[str, Preprocessor]:
    procs: dict[str, Preprocessor] = {"none": none, "canny": canny, "hed": hed}
    for name in ("shuffle", "lineart_standard"):
        fn = _aux(name)
        if fn is not None:
            procs[name] = fn
    return procs
