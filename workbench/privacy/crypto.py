"""Envelope encryption of personal values: AES-256-GCM under a per-subject data key.

A personal value leaves the process as a **token**, a string::

    "\\x1epii." + base64(version | handle(16) | len(field) | field | nonce(12) | ciphertext+tag)

* ``handle`` names the subject without showing its id: HMAC-SHA256 of the subject id under the
  key store's index key, first 16 bytes (see :mod:`workbench.privacy.keystore`);
* ``field`` is the source field the value came from (``"email"``); handle and field are the
  associated data, so a ciphertext cannot be moved to another person or field;
* the nonce is synthetic, ``HMAC-SHA256(subject key, field | plaintext)[:12]`` (a keyed
  pseudonym, as in SIV modes): equal values of one subject's field give equal tokens, which
  only shows that they are equal. For **keys** (a personal record key or grouping column) that
  keeps partitioning, compaction, upserts and joins deterministic; for values it makes tokens
  cacheable both ways; the link disappears with the subject's key;
* the plaintext carries its type in one byte (``s`` str, ``i`` int, ``f`` float, ``b`` bytes,
  ``j`` anything else as JSON), so a value reads back as what was written.

``cryptography`` is imported when the first key is used (``workbench[privacy]``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any

from ..errors import DriverUnavailableError, SerializationError

__all__ = ["PREFIX", "TOKEN_VERSION", "SubjectKey", "is_token", "parse_token"]

#: every token starts with this (ASCII record separator, then ``pii.``): user text never does
PREFIX = "\x1epii."
TOKEN_VERSION = 1
_PREFIX_LEN = len(PREFIX)
_b2a = binascii.b2a_base64
_a2b = binascii.a2b_base64


def aesgcm_class() -> Any:
    """``cryptography``'s AESGCM (a clear error when the extra is missing)."""
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DriverUnavailableError(
            "personal data needs the 'cryptography' package: pip install 'workbench[privacy]'."
        ) from exc
    return AESGCM


def is_token(value: Any) -> bool:
    """True when ``value`` is an encrypted personal value (a token string)."""
    return value.__class__ is str and value.startswith(PREFIX)


def parse_token(token: str) -> tuple[bytes, str, bytes, bytes]:
    """``(handle, field, nonce, ciphertext)`` of a token.

    Raises:
        SerializationError: the token is malformed (cut, edited, or another version).
    """
    try:
        raw = _a2b(token[_PREFIX_LEN:])
        if raw[0] != TOKEN_VERSION:
            raise ValueError(f"token version {raw[0]}")
        handle = raw[1:17]
        flen = raw[17]
        field = raw[18:18 + flen].decode("utf-8")
        nonce = raw[18 + flen:30 + flen]
        ct = raw[30 + flen:]
        if len(handle) != 16 or len(nonce) != 12 or len(ct) < 17:
            raise ValueError("token too short")
    except (ValueError, IndexError, UnicodeDecodeError, binascii.Error) as exc:
        raise SerializationError(f"malformed personal-data token {token[:40]!r}: {exc}") from None
    return handle, field, nonce, ct


def encode_plain(value: Any) -> bytes:
    """A value as typed plaintext bytes (see the module docstring)."""
    cls = value.__class__
    if isinstance(value, str):
        return b"s" + str.encode(value, "utf-8")
    if isinstance(value, bool) or value is None or not isinstance(value, int | float | bytes):
        return b"j" + json.dumps(value, separators=(",", ":"), default=str).encode("utf-8")
    if isinstance(value, int):
        return b"i" + int.__repr__(value).encode("ascii")
    if isinstance(value, float):
        return b"f" + float.__repr__(value).encode("ascii")
    del cls
    return b"b" + bytes(value)


def decode_plain(data: bytes) -> Any:
    """Inverse of :func:`encode_plain`."""
    kind, body = data[:1], data[1:]
    if kind == b"s":
        return body.decode("utf-8")
    if kind == b"i":
        return int(body)
    if kind == b"f":
        return float(body)
    if kind == b"b":
        return bytes(body)
    return json.loads(body)


def _field_bytes(field: str) -> bytes:
    fb = field.encode("utf-8")
    if len(fb) > 255:
        raise SerializationError(f"personal field name {field[:40]!r}... is longer than 255 "
                                 "bytes.")
    return fb


class SubjectKey:
    """One subject's data key, ready to use: AES-256-GCM and the pseudonym HMAC key.

    Args:
        handle: the subject's handle (16 bytes).
        dek: the 32-byte data key.
    """

    __slots__ = ("_aads", "_aead", "_head", "_mac", "handle")

    def __init__(self, handle: bytes, dek: bytes) -> None:
        self.handle = handle
        self._aead = aesgcm_class()(dek)
        self._mac = hmac.new(dek, b"workbench pseudonym v1", hashlib.sha256).digest()
        self._head = bytes([TOKEN_VERSION]) + handle
        self._aads: dict[str, tuple[bytes, bytes]] = {}

    def _aad(self, field: str) -> tuple[bytes, bytes]:
        """``(token head up to the nonce, associated data)`` for ``field`` (cached)."""
        got = self._aads.get(field)
        if got is None:
            fb = _field_bytes(field)
            got = (self._head + bytes([len(fb)]) + fb, self.handle + b"|" + fb)
            self._aads[field] = got
        return got

    def seal(self, value: Any, field: str, nonce: bytes | None = None) -> str:
        """Encrypt ``value`` of ``field`` into a token; the nonce is synthetic (see
        :meth:`pseudonym_nonce`) unless given, so equal values of one subject's field give
        equal tokens."""
        head, aad = self._aad(field)
        if nonce is None:
            nonce = self.pseudonym_nonce(value, field)
        ct = self._aead.encrypt(nonce, encode_plain(value), aad)
        return PREFIX + _b2a(head + nonce + ct, newline=False).decode("ascii")

    def pseudonym_nonce(self, value: Any, field: str) -> bytes:
        """The synthetic nonce: HMAC(subject key, field | typed plaintext), 12 bytes (a keyed
        pseudonym of the value; AES-GCM's nonce is then unique per distinct plaintext)."""
        return hmac.new(self._mac, _field_bytes(field) + b"|" + encode_plain(value),
                        hashlib.sha256).digest()[:12]

    def seal_key(self, value: Any, field: str) -> str:
        """The token of a record key (the same as :meth:`seal`: deterministic)."""
        return self.seal(value, field)

    def open(self, field: str, nonce: bytes, ct: bytes, token: str = "") -> Any:
        """Decrypt; a failed check (edited token, wrong key) raises :class:`SerializationError`."""
        try:
            data = self._aead.decrypt(nonce, ct, self._aad(field)[1])
        except Exception as exc:  # cryptography's InvalidTag
            raise SerializationError(
                f"personal-data token {token[:40]!r}... of field {field!r} does not decrypt "
                f"({type(exc).__name__}): it was edited, or the key store is not the one it "
                "was written with.") from None
        return decode_plain(data)


def short_pseudonym(token: str) -> str:
    """A short, stable text for an erased key: the key token's nonce (its keyed pseudonym)."""
    _h, _f, nonce, _ct = parse_token(token)
    return base64.urlsafe_b64encode(nonce).rstrip(b"=").decode("ascii")
