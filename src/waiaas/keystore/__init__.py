"""The encrypted keystore: Argon2id-derived master key, AEAD-sealed key files, password sources.

Public names::

    Keystore            create / open / unlock / lock, add_key, use_key, rotate_key, seal, ...
    KeyInfo, ArchivedKey, KeyRotation      frozen result values
    resolve_password    argument -> WAIAAS_MASTER_PASSWORD -> OS keyring, never a prompt
    generate_keypair, public_key_for       key pairs for "solana" (ed25519) and "evm" (secp256k1)

See ``docs/keystore.md`` for the on-disk format and operations guide.
"""

from waiaas.keystore.keys import generate_keypair, public_key_for
from waiaas.keystore.password import check_password_strength, resolve_password
from waiaas.keystore.store import FORMAT_VERSION, ArchivedKey, KeyInfo, KeyRotation, Keystore

__all__ = [
    "FORMAT_VERSION",
    "ArchivedKey",
    "KeyInfo",
    "KeyRotation",
    "Keystore",
    "check_password_strength",
    "generate_keypair",
    "public_key_for",
    "resolve_password",
]
