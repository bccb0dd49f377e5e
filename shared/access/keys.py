"""The Ed25519 keys of the back office: who holds which, where they come from.

* **Identity's key** (``IDENTITY_SIGNING_KEY``): only identity holds the private
  half; it signs user tokens and identity's published facts. Every service holds
  the public half (``IDENTITY_PUBLIC_KEY``) and verifies both with it.
* **Each service's own key** (``SERVICE_SIGNING_KEY``): signs that service's
  tokens for other services' internal routes (and the notifier's rating links).
  The receivers know the callers' public halves (``SERVICE_PUBLIC_KEYS``, a JSON
  object ``{"notifier": "<PEM or path>", ...}``).

Rules it keeps:

* A setting holds a PEM text or the path of a PEM file; nothing else is accepted,
  and an error names the setting, never a key's bytes.
* No key is shared by two services, and no symmetric secret signs anything that
  crosses a service boundary.
* Development (``make run``, tests): keys not configured are read from
  ``KEYS_DIR`` (default ``var/keys``): ``identity.key``/``identity.pub`` and
  ``services/<name>.key``/``.pub``. A missing key is generated there once, in a
  directory and files only the owner may read, written aside and linked into
  place so concurrent starters never read half a key (``python -m shared.cli
  keys DIR`` writes a fresh set, with ``service-public-keys.json``, the value of
  ``SERVICE_PUBLIC_KEYS`` with every public key inline).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

IDENTITY = "identity"
SERVICES_DIR = "services"


class KeyConfigError(ValueError):
    """A key setting that is missing or does not hold an Ed25519 key (names the setting)."""


def _pem(value: str, setting: str) -> bytes:
    text = value.strip()
    if text.startswith("-----BEGIN"):
        return text.encode()
    path = Path(text)
    if not text or not path.is_file():
        raise KeyConfigError(f"{setting}: neither a PEM key nor the path of a readable key file")
    return path.read_bytes()


def load_private_key(value: str, setting: str) -> Ed25519PrivateKey:
    """The private key in ``value`` (PEM or a path); ``KeyConfigError`` naming ``setting``."""
    try:
        key = serialization.load_pem_private_key(_pem(value, setting), password=None)
    except (ValueError, TypeError):
        raise KeyConfigError(f"{setting}: not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyConfigError(f"{setting}: not an Ed25519 key")
    return key


def load_public_key(value: str, setting: str) -> Ed25519PublicKey:
    """The public key in ``value`` (PEM or a path); ``KeyConfigError`` naming ``setting``."""
    try:
        key = serialization.load_pem_public_key(_pem(value, setting))
    except (ValueError, TypeError):
        raise KeyConfigError(f"{setting}: not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyConfigError(f"{setting}: not an Ed25519 key")
    return key


def private_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# ---------------------------------------------------------------- files (development)


def identity_key_path(directory: str | Path) -> Path:
    return Path(directory) / f"{IDENTITY}.key"


def service_key_path(directory: str | Path, service: str) -> Path:
    return Path(directory) / SERVICES_DIR / f"{service}.key"


def _write_once(path: Path, data: bytes) -> None:
    """Write ``path`` (owner-only) unless it exists: aside first, then linked into place."""
    if path.exists():
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    candidate = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    with contextlib.suppress(FileExistsError):
        os.link(candidate, path)  # fails if another process won the race: its key stays
    candidate.unlink()


def _ensure_pair(private_path: Path) -> None:
    """A key pair at ``private_path`` (``.key``) and beside it (``.pub``), made once."""
    if not private_path.exists():
        _write_once(private_path, private_pem(Ed25519PrivateKey.generate()))
    public_path = private_path.with_suffix(".pub")
    if not public_path.exists():
        key = load_private_key(str(private_path), str(private_path))
        _write_once(public_path, public_pem(key.public_key()))


def ensure_keys(directory: str | Path, services: Iterable[str]) -> None:
    """Identity's key pair and each of ``services``' pairs in ``directory``, the missing
    ones generated (development and tests; production configures keys)."""
    root = Path(directory)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    _ensure_pair(identity_key_path(root))
    for service in services:
        _ensure_pair(service_key_path(root, service))


def write_fresh_keys(directory: str | Path, services: Iterable[str]) -> list[Path]:
    """A new set in ``directory`` (which must not hold one yet); the files written."""
    root = Path(directory)
    names = list(services)
    taken = [p for p in [identity_key_path(root), *(service_key_path(root, s) for s in names)]]
    existing = [p for p in taken if p.exists()]
    if existing:
        raise FileExistsError(f"{existing[0]} exists; keys are never overwritten")
    ensure_keys(root, names)
    # The public keys in one value, ready for SERVICE_PUBLIC_KEYS (a Kubernetes Secret key).
    _write_once(root / "service-public-keys.json", public_keys_json(root, names).encode())
    return sorted(p for p in root.rglob("*") if p.is_file())


def public_keys_json(directory: str | Path, services: Iterable[str]) -> str:
    """``SERVICE_PUBLIC_KEYS`` for a key set: each service's public key, as PEM text."""
    return json.dumps(
        {
            service: service_key_path(directory, service).with_suffix(".pub").read_text()
            for service in services
        },
        indent=2,
    )


# ---------------------------------------------------------------- who may call whom


@dataclass
class ServiceKeys:
    """The public keys of the services that may call this one, by name.

    ``configured`` comes from ``SERVICE_PUBLIC_KEYS``; without it (development),
    ``directory`` is searched for ``services/<name>.pub`` the first time a caller
    shows up, so a service started after this one is still recognised.
    """

    configured: Mapping[str, Ed25519PublicKey] = field(default_factory=dict)
    directory: Path | None = None
    _found: dict[str, Ed25519PublicKey] = field(default_factory=dict)

    def key_of(self, service: str) -> Ed25519PublicKey | None:
        if service in self.configured:
            return self.configured[service]
        if self.directory is None or self.configured:
            return None
        if service not in self._found:
            # A service name is letters, digits, dashes: nothing that leaves the directory.
            if not service.replace("-", "").replace("_", "").isalnum():
                return None
            path = self.directory / SERVICES_DIR / f"{service}.pub"
            if not path.is_file():
                return None
            self._found[service] = load_public_key(str(path), "KEYS_DIR")
        return self._found[service]


def parse_public_keys(raw: str | Mapping[str, str], setting: str) -> dict[str, Ed25519PublicKey]:
    """``SERVICE_PUBLIC_KEYS`` (a JSON object or a mapping) as keys by service name."""
    mapping = json.loads(raw) if isinstance(raw, str) and raw.strip() else raw or {}
    if not isinstance(mapping, Mapping):
        raise KeyConfigError(f"{setting}: expected a JSON object of service name to key")
    return {
        str(name): load_public_key(str(value), f"{setting}[{name}]")
        for name, value in mapping.items()
    }
