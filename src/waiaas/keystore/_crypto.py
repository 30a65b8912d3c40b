"""Crypto primitives of the keystore: Argon2id key derivation and XChaCha20-Poly1305 AEAD.

Internal module. A sealed blob is ``nonce (24 bytes) || ciphertext+tag``; the associated data
is built by :func:`aad` from length-prefixed fields, so no two different field lists can
produce the same bytes.
"""

from __future__ import annotations

import os
import unicodedata

import nacl.bindings
import nacl.exceptions
import nacl.pwhash.argon2id as argon2id

from waiaas.errors import InvalidInputError

KEY_BYTES = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_KEYBYTES  # 32
NONCE_BYTES = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES  # 24
TAG_BYTES = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_ABYTES  # 16
SALT_BYTES = argon2id.SALTBYTES  # 16
KDF_ALGORITHM = "argon2id13"
AEAD_ALGORITHM = "xchacha20poly1305-ietf"

# Bounds accepted for stored KDF parameters: a forged header must not make unlock take
# hours or allocate terabytes.
OPSLIMIT_BOUNDS = (argon2id.OPSLIMIT_MIN, 64)
MEMLIMIT_BOUNDS = (argon2id.MEMLIMIT_MIN, 1 << 32)

MAX_PASSWORD_BYTES = 4096


class AuthenticationFailed(Exception):
    """A sealed blob did not authenticate (wrong key, wrong associated data, tampered)."""


def password_bytes(password: object) -> bytes:
    """Validate a master password and return its NFC-normalised UTF-8 bytes."""
    if not isinstance(password, str):
        raise InvalidInputError("the password must be a str", field="password")
    if not password:
        raise InvalidInputError("the password must not be empty", field="password")
    raw = unicodedata.normalize("NFC", password).encode("utf-8")
    if len(raw) > MAX_PASSWORD_BYTES:
        raise InvalidInputError(
            f"the password must be at most {MAX_PASSWORD_BYTES} bytes", field="password"
        )
    return raw


def derive_key(password: bytes, salt: bytes, opslimit: int, memlimit: int) -> bytearray:
    """Run Argon2id once and return the 32-byte key in a bytearray (so it can be wiped)."""
    return bytearray(argon2id.kdf(KEY_BYTES, password, salt, opslimit=opslimit, memlimit=memlimit))


def new_salt() -> bytes:
    """A fresh random salt for Argon2id."""
    return os.urandom(SALT_BYTES)


def new_key() -> bytearray:
    """A fresh random 32-byte symmetric key."""
    return bytearray(os.urandom(KEY_BYTES))


def aad(*fields: str | bytes) -> bytes:
    """Associated data from ``fields``: each one as a 4-byte big-endian length then its bytes."""
    out = bytearray()
    for field in fields:
        raw = field.encode("utf-8") if isinstance(field, str) else field
        out += len(raw).to_bytes(4, "big")
        out += raw
    return bytes(out)


def seal(key: bytes | bytearray, plaintext: bytes, associated: bytes) -> bytes:
    """Encrypt and authenticate ``plaintext`` bound to ``associated``; random 24-byte nonce."""
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
        bytes(plaintext), associated, nonce, bytes(key)
    )
    return nonce + ciphertext


def unseal(key: bytes | bytearray, blob: bytes, associated: bytes) -> bytes:
    """Open a blob made by :func:`seal`.

    Raises:
        AuthenticationFailed: too short, tampered, wrong key or wrong associated data.
    """
    if len(blob) < NONCE_BYTES + TAG_BYTES:
        raise AuthenticationFailed("sealed blob is too short")
    try:
        return bytes(
            nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
                blob[NONCE_BYTES:], associated, blob[:NONCE_BYTES], bytes(key)
            )
        )
    except nacl.exceptions.CryptoError:
        raise AuthenticationFailed("sealed blob failed authentication") from None


def wipe(buffer: bytearray | None) -> None:
    """Overwrite ``buffer`` with zeros (best effort: copies made by callees are not reached)."""
    if buffer is not None:
        buffer[:] = bytes(len(buffer))
