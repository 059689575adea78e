"""Master keys: what wraps (encrypts) every subject's data key.

A master key never encrypts personal data itself; it wraps the 32-byte data keys that the key
store keeps. :class:`MasterKey` is the interface an external KMS implements (AWS KMS
``Encrypt``/``Decrypt``, Google Cloud KMS, HashiCorp Vault transit...): two calls, ``wrap`` and
``unwrap``, with associated data. :class:`LocalMasterKey` keeps a 32-byte AES-256-GCM key from
the environment or a file.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Protocol, runtime_checkable

from ..errors import DefinitionError, SerializationError
from .crypto import aesgcm_class

__all__ = ["ENV_KEY", "ENV_KEY_FILE", "LocalMasterKey", "MasterKey", "master_key"]

#: the master key, base64 (url-safe or standard) of 32 random bytes
ENV_KEY = "WORKBENCH_MASTER_KEY"
#: a file holding the master key (base64 text, or 32 raw bytes)
ENV_KEY_FILE = "WORKBENCH_MASTER_KEY_FILE"


@runtime_checkable
class MasterKey(Protocol):
    """Wraps and unwraps data keys. Implement it to keep the master key in an external KMS.

    ``wrap(dek, aad)`` returns an opaque blob the key store saves; ``unwrap(blob, aad)``
    returns the data key, or raises when the blob or ``aad`` do not match. ``aad`` (the
    subject's handle) must be bound to the blob, as AEAD associated data or a KMS
    "encryption context". ``fingerprint`` names the key (never the key itself) in errors.
    """

    fingerprint: str

    def wrap(self, dek: bytes, aad: bytes) -> bytes: ...

    def unwrap(self, blob: bytes, aad: bytes) -> bytes: ...


class LocalMasterKey:
    """An AES-256-GCM master key held in the process (from env, a file, or bytes).

    Args:
        key: 32 bytes.
    """

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) != 32:
            raise DefinitionError("a master key is 32 bytes (AES-256); make one with "
                                  "`workbench forget --new-master-key FILE`.")
        self._aead = aesgcm_class()(key)
        self.fingerprint = "local:" + hashlib.sha256(b"workbench master|" + key).hexdigest()[:12]

    @classmethod
    def from_text(cls, text: str) -> LocalMasterKey:
        """From base64 text (url-safe or standard, padding optional)."""
        s = text.strip()
        try:
            raw = base64.urlsafe_b64decode(s.replace("+", "-").replace("/", "_")
                                           + "=" * (-len(s) % 4))
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise DefinitionError("the master key must be base64 of 32 bytes (got "
                                  f"{len(raw)} bytes); make one with `workbench forget "
                                  "--new-master-key FILE`.")
        return cls(raw)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> LocalMasterKey:
        """From a file holding base64 text or 32 raw bytes."""
        data = Path(path).read_bytes()
        if len(data) == 32:
            return cls(data)
        return cls.from_text(data.decode("ascii", "replace"))

    @staticmethod
    def generate(path: str | os.PathLike[str]) -> LocalMasterKey:
        """Create a new random master key in ``path`` (mode 0600, refused if it exists)."""
        raw = os.urandom(32)
        fd = os.open(os.fspath(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, base64.urlsafe_b64encode(raw) + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        return LocalMasterKey(raw)

    def wrap(self, dek: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + bytes(self._aead.encrypt(nonce, dek, b"workbench dek v1|" + aad))

    def unwrap(self, blob: bytes, aad: bytes) -> bytes:
        try:
            return bytes(self._aead.decrypt(blob[:12], blob[12:], b"workbench dek v1|" + aad))
        except Exception:
            raise SerializationError(
                f"a data key in the key store does not unwrap with master key "
                f"{self.fingerprint}: the key store was written under another master key."
            ) from None

    def __repr__(self) -> str:
        return f"<LocalMasterKey {self.fingerprint}>"


def master_key(given: MasterKey | bytes | str | os.PathLike[str] | None) -> MasterKey:
    """The master key: ``given`` (a :class:`MasterKey`, 32 bytes, base64 text or a path), else
    ``$WORKBENCH_MASTER_KEY``, else the file named by ``$WORKBENCH_MASTER_KEY_FILE``."""
    if isinstance(given, MasterKey):
        return given
    if isinstance(given, bytes):
        return LocalMasterKey(given)
    if isinstance(given, os.PathLike):
        return LocalMasterKey.from_file(given)
    if isinstance(given, str):
        return (LocalMasterKey.from_file(given) if os.path.exists(given)
                else LocalMasterKey.from_text(given))
    if os.environ.get(ENV_KEY):
        return LocalMasterKey.from_text(os.environ[ENV_KEY])
    if os.environ.get(ENV_KEY_FILE):
        return LocalMasterKey.from_file(os.environ[ENV_KEY_FILE])
    raise DefinitionError(
        f"no master key: pass master=... to wb.KeyStore, or set ${ENV_KEY} (base64 of 32 "
        f"bytes) or ${ENV_KEY_FILE}; make one with `workbench forget --new-master-key FILE`.")
