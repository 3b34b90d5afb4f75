"""C2PA Content Credentials: sign images the studio makes, and verify any image's manifest.

Signing uses the `c2pa-python` package. On first use the studio creates its own signing identity
under `config_dir()/provenance/`: a local certificate authority (its key is thrown away once the
signer certificate is issued) and an ES256 (P-256) signing key with a certificate carrying the
`digitalSignature` key usage and the `emailProtection` extended key usage that C2PA requires.
Readers report such files as *valid* (the manifest is intact and matches the pixels) but the
signer as *untrusted* (the local CA is on nobody's trust list) — see docs/provenance.md for how to
bring a certificate from a CA that validators trust.

Bring your own certificate: put a PEM chain (signer first, then intermediates) in
`provenance/signer.pem` and its private key in `provenance/signer.key`, or point `STUDIO_C2PA_CERT`
and `STUDIO_C2PA_KEY` at them; `STUDIO_C2PA_ALG` (or `provenance/signer.json` {"alg": ...}) names
the algorithm (es256, es384, es512, ps256, ps384, ps512, ed25519; default es256) and
`STUDIO_C2PA_TSA_URL` / {"tsa_url": ...} an optional RFC 3161 time-stamp server.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import os
import shutil
import tempfile
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from studio.core import paths
from studio.core.errors import ProvenanceError
from studio.core.metadata.xmp import COMPOSITE, source_type_uri

MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}
STUDIO_ASSERTION = "org.studio.generation"
# Validation codes that say nothing about the file's integrity: the local CA is not on a trust
# list, and there is no network to fetch revocation data.
_NOT_INTEGRITY = ("signingCredential.untrusted", "signingCredential.ocsp")

_lock = threading.Lock()


@dataclass(frozen=True)
class SigningIdentity:
    chain_pem: bytes
    key_pem: bytes
    alg: str = "es256"
    tsa_url: str | None = None
    source: str = ""  # where it came from, for messages


@dataclass
class ProvenanceStatus:
    """What a C2PA check found. `state`: "valid", "missing" or "invalid"."""

    state: str
    detail: str = ""
    failures: list[str] = field(default_factory=list)
    trusted: bool = False
    signer: str = ""
    issuer: str = ""
    action: str = ""
    digital_source_type: str = ""
    software: str = ""
    generation: dict[str, Any] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return self.state == "valid"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- identity --------------------------------------------------------------------------------------


def provenance_dir() -> Path:
    return paths.config_dir() / "provenance"


def _make_identity(folder: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = _dt.datetime.now(_dt.timezone.utc)
    start, end = now - _dt.timedelta(days=1), now + _dt.timedelta(days=3650)
    user = os.environ.get("USER") or os.environ.get("USERNAME") or "user"

    def name(cn: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Studio (local)"),
            ]
        )

    def usage(*, sign: bool, ca: bool) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=sign, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
            encipher_only=False, decipher_only=False,
        )  # fmt: skip

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name(f"Studio local CA ({user})")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage(sign=False, ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name(f"Studio signer ({user})"))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(sign=True, ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (folder / "signer.pem").write_bytes(cert.public_bytes(pem) + ca.public_bytes(pem))
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    key_file = folder / "signer.key"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (folder / "signer.json").write_text(json.dumps({"alg": "es256", "generated": True}), "utf-8")


def ensure_identity() -> SigningIdentity:
    """The signing identity: the user's own (env or files) or the one made here on first run."""
    env_cert, env_key = os.environ.get("STUDIO_C2PA_CERT"), os.environ.get("STUDIO_C2PA_KEY")
    folder = provenance_dir()
    if env_cert or env_key:
        if not (env_cert and env_key):
            raise ProvenanceError(
                "STUDIO_C2PA_CERT and STUDIO_C2PA_KEY must be set together",
                "Point both at PEM files (certificate chain and private key).",
            )
        cert_file, key_file, source = Path(env_cert), Path(env_key), "environment"
        settings: dict[str, Any] = {}
    else:
        with _lock:
            if not (folder / "signer.pem").exists() or not (folder / "signer.key").exists():
                folder.parent.mkdir(parents=True, exist_ok=True)
                tmp = Path(tempfile.mkdtemp(prefix=".provenance-", dir=folder.parent))
                try:
                    _make_identity(tmp)
                    if folder.exists() and not any(folder.iterdir()):
                        folder.rmdir()
                    os.rename(tmp, folder)  # atomic; loses harmlessly to a concurrent first run
                except OSError:
                    if not (folder / "signer.pem").exists():
                        raise ProvenanceError(
                            f"could not create the signing key in {folder}",
                            "Check that the folder is writable.",
                        ) from None
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
        cert_file, key_file, source = folder / "signer.pem", folder / "signer.key", str(folder)
        try:
            settings = json.loads((folder / "signer.json").read_text("utf-8"))
        except (OSError, ValueError):
            settings = {}
    try:
        chain, key = cert_file.read_bytes(), key_file.read_bytes()
    except OSError as exc:
        raise ProvenanceError(f"cannot read the signing certificate or key: {exc}") from None
    alg = os.environ.get("STUDIO_C2PA_ALG") or str(settings.get("alg") or "es256")
    tsa = os.environ.get("STUDIO_C2PA_TSA_URL") or settings.get("tsa_url") or None
    return SigningIdentity(chain, key, alg.lower(), tsa, source)


# -- signing ---------------------------------------------------------------------------------------


def _context() -> Any:
    import c2pa

    # No claim thumbnail: it would make every small PNG several times larger.
    settings = c2pa.Settings.from_dict({"builder": {"thumbnail": {"enabled": False}}})
    return c2pa.Context(settings=settings)


def sign_bytes(
    data: bytes,
    mime: str,
    *,
    source_type: str,
    software: str,
    software_version: str,
    model: str = "",
    model_sha256: str = "",
    title: str = "",
    generation: dict[str, Any] | None = None,
    ingredient: tuple[bytes, str, str] | None = None,
    action: str | None = None,
    identity: SigningIdentity | None = None,
) -> bytes:
    """Embed a signed C2PA manifest in an encoded image and return the new bytes.

    The action is `c2pa.created`; when a user's image went in (`source_type` =
    compositeWithTrainedAlgorithmicMedia) and `ingredient` = (bytes, mime, title) gives that
    image, it is added as the parent ingredient and the actions become `c2pa.opened` (the parent)
    then `c2pa.edited` — C2PA requires an edit's first action to open its parent. Without the
    input file the action stays `c2pa.created`, still with the composite source type. `generation` is stored as the
    `org.studio.generation` assertion (model, hashes, the recipe).
    """
    import c2pa

    ident = identity or ensure_identity()
    agent = {"name": software, "version": software_version}
    params: dict[str, Any] = {}
    if model:
        params["model"] = model
    if model_sha256:
        params["model_sha256"] = model_sha256
    act: dict[str, Any] = {
        "action": action or "c2pa.created",
        "digitalSourceType": source_type_uri(source_type),
        "softwareAgent": agent,
    }
    if params:
        act["parameters"] = params
    actions = [act]
    if ingredient is not None and action is None and source_type == COMPOSITE:
        # An edit of a user's image: C2PA wants the parent opened first, then edited.
        act["action"] = "c2pa.edited"
        actions = [
            {"action": "c2pa.opened", "softwareAgent": agent,
             "parameters": {"ingredientIds": ["parent"]}},
            act,
        ]  # fmt: skip
    manifest = {
        "claim_generator_info": [agent],
        "title": title or "image",
        "format": mime,
        "assertions": [
            {"label": "c2pa.actions", "data": {"actions": actions}},
            {
                "label": STUDIO_ASSERTION,
                "data": {
                    "software": agent,
                    "model": model,
                    "model_sha256": model_sha256,
                    **(generation or {}),
                },
            },
        ],
    }
    try:
        signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(ident.alg, ident.chain_pem, ident.key_pem, ident.tsa_url))
        builder = c2pa.Builder(manifest, _context())
        if ingredient is not None:
            ing_bytes, ing_mime, ing_title = ingredient
            builder.add_ingredient(
                {"title": ing_title, "relationship": "parentOf", "label": "parent"},
                ing_mime,
                io.BytesIO(ing_bytes),
            )
        out = io.BytesIO()
        builder.sign(signer, mime, io.BytesIO(data), out)
    except c2pa.C2paError as exc:
        raise ProvenanceError(
            f"could not sign the image's content credentials: {exc}",
            f"Check the signing certificate and key in {ident.source or provenance_dir()}.",
        ) from None
    return out.getvalue()


# -- verification ----------------------------------------------------------------------------------


def verify_bytes(data: bytes, mime: str) -> ProvenanceStatus:
    """Validate the C2PA manifest embedded in an encoded image."""
    import c2pa

    try:
        reader = c2pa.Reader(mime, io.BytesIO(data))
    except c2pa.C2paError as exc:
        text = str(exc)
        if "ManifestNotFound" in type(exc).__name__ or "ManifestNotFound" in text or "JUMBF" in text:
            return ProvenanceStatus("missing", "no content credentials in this file")
        return ProvenanceStatus("invalid", f"the content credentials cannot be read: {text}")
    try:
        state = reader.get_validation_state() or ""
        results = reader.get_validation_results() or {}
        active = reader.get_active_manifest() or {}
    except c2pa.C2paError as exc:
        return ProvenanceStatus("invalid", f"the content credentials cannot be read: {exc}")
    finally:
        reader.close()
    failures: list[str] = []
    untrusted = False
    for section in results.values() if isinstance(results, dict) else ():
        if not isinstance(section, dict):
            continue
        for item in section.get("failure", []) or []:
            code = str(item.get("code", ""))
            if code.startswith(_NOT_INTEGRITY):
                untrusted = untrusted or code == "signingCredential.untrusted"
                continue
            failures.append(code)
    status = ProvenanceStatus("valid" if state in ("Valid", "Trusted") and not failures else "invalid")
    status.failures = failures
    status.trusted = state == "Trusted" or (not untrusted and state == "Valid" and not failures)
    sig = active.get("signature_info") or {}
    status.signer = str(sig.get("common_name") or "")
    status.issuer = str(sig.get("issuer") or "")
    for assertion in active.get("assertions", []) or []:
        label = str(assertion.get("label", ""))
        content = assertion.get("data") or {}
        if label.startswith("c2pa.actions") and not status.action:
            for act in content.get("actions", []) or []:
                if act.get("action") in ("c2pa.created", "c2pa.edited"):
                    status.action = str(act.get("action"))
                    dst = str(act.get("digitalSourceType") or "")
                    status.digital_source_type = dst.rstrip("/").rsplit("/", 1)[-1]
                    agent = act.get("softwareAgent") or {}
                    if isinstance(agent, dict):
                        status.software = " ".join(str(agent.get(k, "")) for k in ("name", "version")).strip()
                    break
        elif label == STUDIO_ASSERTION and isinstance(content, dict):
            status.generation = content
    if status.state == "valid":
        status.detail = "content credentials intact" + (
            "" if status.trusted else f" (signer {status.signer or '?'} is not on a trust list)"
        )
    else:
        status.detail = "content credentials do not match the file: " + (
            ", ".join(failures) or state or "unknown problem"
        )
    return status


def verify_file(path: str | os.PathLike[str]) -> ProvenanceStatus:
    from studio.core.errors import MetadataError

    p = Path(path)
    mime = MIME.get(p.suffix.lower())
    try:
        if p.stat().st_size > 512 << 20:
            raise MetadataError(f"{p.name} is larger than 512 MiB; not checked")
        data = p.read_bytes()
    except OSError as exc:
        raise MetadataError(f"cannot read {p}: {exc.strerror or exc}") from None
    if mime is None:
        mime = sniff_mime(data)
    if mime is None:
        raise MetadataError(f"{p.name} is not a PNG, JPEG or WebP image")
    return verify_bytes(data, mime)


def sniff_mime(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None
