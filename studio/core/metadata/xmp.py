"""XMP packets labelling an image as AI-made (IPTC Digital Source Type) and reading the label back.

- `trainedAlgorithmicMedia`: made by a trained model from a prompt, no user pixels went in.
- `compositeWithTrainedAlgorithmicMedia`: a user's image was an input (img2img, inpaint, outpaint).

Alongside the digital source type the packet carries the IPTC 2025 AI properties
(`Iptc4xmpExt:AISystemUsed`, `AISystemVersionUsed`, `AIPromptInformation`), `xmp:CreatorTool`,
`xmp:CreateDate` and the prompt as `dc:description`.
"""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
from datetime import datetime, timezone

IPTC_DST = "http://cv.iptc.org/newscodes/digitalsourcetype/"
TRAINED = "trainedAlgorithmicMedia"
COMPOSITE = "compositeWithTrainedAlgorithmicMedia"

NS = {
    "x": "adobe:ns:meta/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "dc": "http://purl.org/dc/elements/1.1/",
    "xmp": "http://ns.adobe.com/xap/1.0/",
    "Iptc4xmpExt": "http://iptc.org/std/Iptc4xmpExt/2008-02-29/",
    "studio": "https://studio.invalid/ns/1.0/",
}
for _prefix, _uri in NS.items():
    ET.register_namespace(_prefix, _uri)

MAX_XMP_BYTES = 4 << 20
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_DST_RE = re.compile(r"DigitalSourceType\s*(?:>|=\s*[\"'])\s*([^<\"'\s]+)")


def source_type_uri(kind: str) -> str:
    return IPTC_DST + kind


def _q(prefix: str, name: str) -> str:
    return f"{{{NS[prefix]}}}{name}"


def build_xmp(
    source_type: str,
    *,
    software: str,
    software_version: str,
    model: str = "",
    prompt: str = "",
    created: datetime | None = None,
    recipe_json: str = "",
    image_json: str = "",
) -> str:
    """An XMP packet (UTF-8 text, with the `<?xpacket?>` wrapper) for an AI-made image."""
    created = created or datetime.now(timezone.utc)
    prompt = _XML_ILLEGAL.sub("", prompt)
    model = _XML_ILLEGAL.sub("", model)
    meta = ET.Element(_q("x", "xmpmeta"))
    rdf = ET.SubElement(meta, _q("rdf", "RDF"))
    desc = ET.SubElement(rdf, _q("rdf", "Description"), {_q("rdf", "about"): ""})
    ET.SubElement(desc, _q("Iptc4xmpExt", "DigitalSourceType")).text = source_type_uri(source_type)
    ET.SubElement(desc, _q("Iptc4xmpExt", "AISystemUsed")).text = f"{software} ({model})" if model else software
    ET.SubElement(desc, _q("Iptc4xmpExt", "AISystemVersionUsed")).text = software_version
    if prompt:
        ET.SubElement(desc, _q("Iptc4xmpExt", "AIPromptInformation")).text = prompt
        alt = ET.SubElement(ET.SubElement(desc, _q("dc", "description")), _q("rdf", "Alt"))
        li = ET.SubElement(alt, _q("rdf", "li"), {"{http://www.w3.org/XML/1998/namespace}lang": "x-default"})
        li.text = prompt
    ET.SubElement(desc, _q("xmp", "CreatorTool")).text = f"{software} {software_version}"
    ET.SubElement(desc, _q("xmp", "CreateDate")).text = created.isoformat(timespec="seconds")
    if recipe_json:
        ET.SubElement(desc, _q("studio", "Recipe")).text = _XML_ILLEGAL.sub("", recipe_json)
    if image_json:
        ET.SubElement(desc, _q("studio", "Image")).text = image_json
    body = ET.tostring(meta, encoding="unicode")
    return f'<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n{body}\n<?xpacket end="w"?>'


def read_recipe(xmp: str | None, element: str = "Recipe") -> str | None:
    """This studio's recipe JSON (or, with element="Image", the batch position) if present."""
    if not xmp:
        return None
    m = re.search(f"<studio:{element}>([^<]*)</studio:{element}>", xmp[:MAX_XMP_BYTES])
    return html.unescape(m.group(1)) if m else None


def read_source_type(xmp: str | bytes | None) -> str | None:
    """The digital source type's short name (e.g. "trainedAlgorithmicMedia") or None.

    Read with a pattern, not an XML parser, so a hostile packet cannot expand entities.
    """
    if not xmp:
        return None
    if isinstance(xmp, bytes):
        xmp = xmp[:MAX_XMP_BYTES].decode("utf-8", "replace")
    m = _DST_RE.search(xmp[:MAX_XMP_BYTES])
    if not m:
        return None
    return m.group(1).rstrip("/").rsplit("/", 1)[-1]
