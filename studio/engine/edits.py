"""img2img, inpainting and outpainting around the same sampling loop.

`plan_edit` turns a request with an init image into an `EditPlan`: the full canvas (expanded for
outpainting), the mask the model sees (grown), the compositing mask (grown + feathered), and the
region that is generated (whole canvas snapped to multiples of 8, or only the masked box plus
padding at the request's resolution). `EditPlan.finish` pastes a generated region back, matches
its colours to the input's (inpaint/outpaint with `color_correction`; see `studio.engine.color`)
and composites, so pixels outside the feathered mask are the input's, byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from studio.core.errors import InvalidRequest
from studio.core.request import GenerationRequest
from studio.engine import inpaint as geo
from studio.engine.color import Correction, match_colour, surround


@dataclass
class EditPlan:
    kind: str  # img2img | inpaint | outpaint
    canvas: np.ndarray  # (H, W, 3) the picture being edited (outpaint: already expanded)
    model_mask: np.ndarray | None  # (H, W) grown binary mask the model sees (None for img2img)
    blend_mask: np.ndarray  # (H, W) grown + feathered mask used to composite
    region: geo.Region  # where generation happens, in canvas pixels
    gen_size: tuple[int, int]  # (w, h) the pipeline generates at, multiples of 8
    color_correction: bool = False  # match the generated colours to the input's unmasked surround
    corrections: list[Correction] = field(default_factory=list)  # one per finished image

    def region_image(self) -> Image.Image:
        r = self.region
        return Image.fromarray(geo.resize(self.canvas[r.y0 : r.y1, r.x0 : r.x1], self.gen_size))

    def region_mask(self) -> Image.Image | None:
        if self.model_mask is None:
            return None
        r = self.region
        return Image.fromarray(geo.resize(self.model_mask[r.y0 : r.y1, r.x0 : r.x1], self.gen_size, nearest=True))

    def finish(self, generated: np.ndarray) -> np.ndarray:
        """Paste one generated (gen_h, gen_w, 3) image into the canvas and composite."""
        r = self.region
        full = self.canvas.copy()
        patch = geo.resize(generated, r.size)
        if self.color_correction:
            box = (slice(r.y0, r.y1), slice(r.x0, r.x1))
            blend = self.blend_mask[box]
            patch, done = match_colour(patch, self.canvas[box], surround(blend), target=blend > 0)
            self.corrections.append(done)
        full[r.y0 : r.y1, r.x0 : r.x1] = patch
        return geo.composite(self.canvas, full, self.blend_mask)

    def preview(self, image: np.ndarray) -> np.ndarray:
        """Composite a (small) preview of the region onto the canvas at the preview's scale."""
        r = self.region
        scale = image.shape[1] / self.gen_size[0]
        if image.shape[0] != round(self.gen_size[1] * scale):  # a batch grid: show it as is
            return image
        k = scale * self.gen_size[0] / r.size[0]  # canvas px -> preview px
        cw, ch = max(1, round(self.canvas.shape[1] * k)), max(1, round(self.canvas.shape[0] * k))
        canvas = geo.resize(self.canvas, (cw, ch))
        mask = geo.resize(self.blend_mask, (cw, ch))
        full = canvas.copy()
        x0, y0 = round(r.x0 * k), round(r.y0 * k)
        x1, y1 = max(x0 + 1, min(cw, round(r.x1 * k))), max(y0 + 1, min(ch, round(r.y1 * k)))
        full[y0:y1, x0:x1] = geo.resize(image, (x1 - x0, y1 - y0))
        return geo.composite(canvas, full, mask)


def plan_edit(request: GenerationRequest) -> EditPlan:
    assert request.init_image is not None
    canvas = geo.load_rgb(request.init_image.path, "init image")
    h, w = canvas.shape[:2]
    if request.outpaint is not None:  # a mask, if any, is painted on the input and repainted as well
        painted = geo.load_mask(request.mask.path, (w, h)) if request.mask is not None else None
        canvas, mask, _ = geo.outpaint_with_mask(
            canvas, request.outpaint, request.outpaint_fill, request.seed, geo.outpaint_band(request.mask_blur), painted
        )
        kind = "outpaint"
    elif request.mask is not None:
        mask = geo.load_mask(request.mask.path, (w, h))
        if not (mask > 127).any():
            raise InvalidRequest("The mask is empty.", "Paint over the part of the image that should change.")
        kind = "inpaint"
    else:
        mask = None
        kind = "img2img"
    if mask is None:
        model_mask = None
        blend = np.full(canvas.shape[:2], 255, np.uint8)
    else:
        model_mask = geo.grow(mask, request.mask_grow)
        blend = geo.feather(model_mask, request.mask_blur)
    H, W = canvas.shape[:2]
    if request.inpaint_area == "only_masked" and model_mask is not None:
        region = geo.masked_region(blend > 0, request.inpaint_padding, request.width / request.height)
        gen = (request.width, request.height)
    else:
        region = geo.Region(0, 0, W, H)
        gen = (geo.snap8(W), geo.snap8(H))
    return EditPlan(kind, canvas, model_mask, blend, region, gen, request.color_correction and kind != "img2img")


def steps_run(request: GenerationRequest, flow: bool = False) -> int:
    """How many denoising steps an img2img-style run does: diffusers' SD pipelines run
    int(steps · strength); its FLUX/SD3 ones (`flow`) skip int(steps − steps · strength) of them."""
    if flow:
        return max(1, request.steps - int(max(request.steps - request.steps * request.strength, 0)))
    return max(1, min(int(request.steps * request.strength), request.steps))
