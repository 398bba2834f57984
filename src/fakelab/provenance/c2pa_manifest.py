"""A signed C2PA manifest on each output: made by fakelab, AI-generated, from these inputs.

The signer is the user's own certificate chain and key (FAKELAB_C2PA_CERT and
FAKELAB_C2PA_KEY, PEM, ES256 or the algorithm FAKELAB_C2PA_ALG names), or else a local
one created on first use in $XDG_CONFIG_HOME/fakelab/c2pa (~/.config/fakelab/c2pa): a
self-made root certificate and a signing certificate it issued (ECDSA P-256). Readers
trust a manifest signed by the local root only where that root is given to them as a
trust anchor: `fakelab provenance check` does so for the local root and FAKELAB_C2PA_TRUST.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from fakelab.atomic import atomic_output
from fakelab.errors import FakelabError, InputError

MIME_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".gif": "image/gif",
              ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}
IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
TRAINED_ALGORITHMIC_MEDIA = IPTC + "trainedAlgorithmicMedia"
COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA = IPTC + "compositeWithTrainedAlgorithmicMedia"
ASSERTION = "org.fakelab.provenance"


class ProvenanceError(FakelabError):
    """Signing or reading provenance failed for a reason the user can fix."""


def _c2pa():
    try:
        import c2pa
    except ImportError:
        raise ProvenanceError(
            'C2PA manifests need the c2pa-python package: pip install "fakelab[provenance]" (or pass --no-provenance)'
        ) from None
    return c2pa


def config_folder() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "fakelab" / "c2pa"


@dataclass(frozen=True)
class SigningIdentity:
    chain_pem: bytes  # signing certificate first, then the certificates that issued it
    key_pem: bytes
    algorithm: str  # es256, ps256, ...
    trust_pem: bytes  # the root(s) readers should trust for this signer
    origin: str  # "local" or the certificate path


def signing_identity() -> SigningIdentity:
    """The user's certificate (FAKELAB_C2PA_CERT/KEY) or the local one, created when missing."""
    cert, key = os.environ.get("FAKELAB_C2PA_CERT"), os.environ.get("FAKELAB_C2PA_KEY")
    if cert or key:
        if not (cert and key):
            raise ProvenanceError("set both FAKELAB_C2PA_CERT and FAKELAB_C2PA_KEY (PEM files), or neither")
        for path in (cert, key):
            if not Path(path).is_file():
                raise ProvenanceError(f"the C2PA certificate or key {path} does not exist")
        trust = os.environ.get("FAKELAB_C2PA_TRUST")
        chain = Path(cert).read_bytes()
        return SigningIdentity(chain, Path(key).read_bytes(), os.environ.get("FAKELAB_C2PA_ALG", "es256").lower(),
                               Path(trust).read_bytes() if trust else b"", cert)
    return _local_identity()


def _local_identity() -> SigningIdentity:
    folder = config_folder()
    chain, key, root = folder / "signer-chain.pem", folder / "signer-key.pem", folder / "root.pem"
    if not (chain.is_file() and key.is_file() and root.is_file()):
        _create_local_identity(folder)
    return SigningIdentity(chain.read_bytes(), key.read_bytes(), "es256", root.read_bytes(), "local")


def _create_local_identity(folder: Path) -> None:
    """A root certificate and a signing certificate it issues, as C2PA validators expect:
    the signer is no CA, signs digitally, and has the e-mail protection usage."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fakelab (local)")])

    def usage(sign: bool, ca: bool) -> x509.KeyUsage:
        return x509.KeyUsage(digital_signature=sign, content_commitment=False, key_encipherment=False,
                             data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                             encipher_only=False, decipher_only=False)

    now = datetime.datetime.now(datetime.timezone.utc)
    user = os.environ.get("USER") or "user"
    root_key, signer_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root = (
        x509.CertificateBuilder().subject_name(name(f"fakelab local root ({user})")).issuer_name(name(f"fakelab local root ({user})"))
        .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage(sign=False, ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    signer = (
        x509.CertificateBuilder().subject_name(name(f"fakelab signer ({user})")).issuer_name(root.subject)
        .public_key(signer_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(sign=True, ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(signer_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    key_bytes = signer_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    # The root's key is not kept: this root issues this one signer only.
    for filename, data in (("signer-key.pem", key_bytes), ("signer-chain.pem", signer.public_bytes(pem) + root.public_bytes(pem)),
                           ("root.pem", root.public_bytes(pem))):
        with atomic_output(folder / filename) as tmp:
            tmp.write_bytes(data)
            os.chmod(tmp, 0o600)


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def can_sign(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in MIME_TYPES


def sign_output(
    path: str | os.PathLike,
    inputs: list[str | os.PathLike] = (),
    *,
    action: str = "c2pa.created",
    source_type: str = TRAINED_ALGORITHMIC_MEDIA,
    description: str = "",
    parameters: dict | None = None,
    content_id: str | None = None,
) -> dict:
    """Embed a signed C2PA manifest in `path` (rewritten in place, atomically) and return it.

    The manifest says fakelab made the file (`action`, with the IPTC digital source type)
    from `inputs`, each named with its SHA-256; `parameters` (model, options) and the
    watermark's `content_id` go in fakelab's own assertion.
    """
    c2pa = _c2pa()
    from fakelab import __version__

    path = Path(path)
    mime = MIME_TYPES.get(path.suffix.lower())
    if mime is None:
        raise ProvenanceError(f"C2PA manifests cannot be embedded in {path.suffix} files; use .mp4 or pass --no-provenance")
    recorded_inputs = [{"name": Path(item).name, "sha256": sha256_file(item)} for item in inputs if Path(item).is_file()]
    agent = {"name": "fakelab", "version": __version__}
    described = {"description": description} if description else {}
    # C2PA wants a manifest without a parent ingredient to start with c2pa.created; an edit
    # (the attack's perturbation) is recorded as a second action of the file it created.
    actions = [{"action": "c2pa.created", "digitalSourceType": source_type, "softwareAgent": agent,
                **(described if action == "c2pa.created" else {})}]
    if action != "c2pa.created":
        actions.append({"action": action, "softwareAgent": agent, **described})
    manifest = {
        "claim_generator_info": [agent],
        "title": path.name,
        "format": mime,
        "assertions": [
            {"label": "c2pa.actions.v2", "data": {"actions": actions}},
            {"label": ASSERTION, "data": {
                "tool": "fakelab", "version": __version__, "content_id": content_id,
                "inputs": recorded_inputs, "parameters": parameters or {},
            }},
        ],
    }
    identity = signing_identity()
    try:
        signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(identity.algorithm, identity.chain_pem, identity.key_pem, None))
        builder = c2pa.Builder(manifest)
        with atomic_output(path) as tmp, open(path, "rb") as source, open(tmp, "w+b") as target:
            builder.sign(signer, mime, source, target)
    except c2pa.C2paError as error:
        raise ProvenanceError(f"could not sign {path} with the {identity.origin} C2PA certificate: {error}") from None
    return manifest


@dataclass
class ManifestReading:
    present: bool
    state: str | None = None  # "Trusted" (signed by a known root), "Valid" (intact, signer unknown), "Invalid"
    signer: str | None = None
    issuer: str | None = None
    claims: list[dict] = field(default_factory=list)  # the actions
    fakelab: dict | None = None  # fakelab's assertion
    problems: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def valid(self) -> bool:
        return self.state in ("Valid", "Trusted")

    @property
    def made_by_fakelab(self) -> bool:
        return self.valid and self.fakelab is not None

    def describe(self) -> str:
        if not self.present:
            return "C2PA manifest: none" + (f" ({self.error})" if self.error else "")
        actions = ", ".join(f"{claim.get('action')} ({str(claim.get('digitalSourceType', '')).rsplit('/', 1)[-1]})" for claim in self.claims)
        verdict = {"Trusted": "valid, signer trusted", "Valid": "valid, signer not in the trust list"}.get(self.state, "INVALID")
        text = f"C2PA manifest: {verdict}; signed by {self.signer} (issuer {self.issuer}); claims: {actions or 'none'}"
        if self.problems:
            text += "; problems: " + "; ".join(self.problems[:3])
        return text

    def to_json(self) -> dict:
        return {"present": self.present, "state": self.state, "valid": self.valid, "signer": self.signer,
                "issuer": self.issuer, "claims": self.claims, "fakelab": self.fakelab, "problems": self.problems,
                "error": self.error}


def _trust_settings() -> dict:
    anchors = b""
    root = config_folder() / "root.pem"
    if root.is_file():
        anchors += root.read_bytes()
    extra = os.environ.get("FAKELAB_C2PA_TRUST")
    if extra and Path(extra).is_file():
        anchors += Path(extra).read_bytes()
    return {"verify": {"verify_trust": True}, "trust": {"user_anchors": anchors.decode()}} if anchors else {}


def read_manifest(path: str | os.PathLike) -> ManifestReading:
    """Read and validate the C2PA manifest of `path` against the local root (and FAKELAB_C2PA_TRUST)."""
    c2pa = _c2pa()
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist")
    try:
        settings = _trust_settings()
        context = c2pa.Context.from_dict(settings) if settings else None
        reader = c2pa.Reader(str(path), context=context) if context else c2pa.Reader(str(path))
        with reader:
            active = reader.get_active_manifest()
            state = reader.get_validation_state()
            results = reader.get_validation_results() or {}
    except c2pa.C2paError as error:
        message = str(error)
        if "ManifestNotFound" in type(error).__name__ or "no JUMBF" in message or "not found" in message.lower():
            return ManifestReading(present=False)
        return ManifestReading(present=False, error=message.splitlines()[0][:200])
    if not active:
        return ManifestReading(present=False)
    signature = active.get("signature_info") or {}
    claims, fakelab = [], None
    for assertion in active.get("assertions", []):
        if assertion.get("label", "").startswith("c2pa.actions"):
            claims.extend(assertion.get("data", {}).get("actions", []))
        elif assertion.get("label") == ASSERTION:
            fakelab = assertion.get("data")
    failures = (results.get("activeManifest") or {}).get("failure", [])
    problems = [f"{item.get('code')}: {item.get('explanation', '')}" for item in failures]
    return ManifestReading(True, state, signature.get("common_name"), signature.get("issuer"), claims, fakelab, problems)


def dump(reading: ManifestReading) -> str:
    return json.dumps(reading.to_json(), indent=2)
