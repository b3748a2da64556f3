"""Key format `cpk_<id>_<secret>`: generation, hashing, parsing. Pure (stdlib only).

A key is 256 random bits, so a fast hash (SHA-256) is the right tool: slow hashes exist for
low-entropy passwords. Only the hash is ever stored.
"""

from __future__ import annotations

import hashlib
import re
import secrets

PREFIX = "cpk_"
KEY_SHAPE = re.compile(r"cpk_[A-Za-z0-9]{8}_[A-Za-z0-9_\-]{20,}")
_ID_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"


def new_key_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


def new_key(key_id: str | None = None) -> tuple[str, str]:
    """(key id, full key). The secret is 32 bytes from `secrets.token_urlsafe`."""
    key_id = key_id or new_key_id()
    return key_id, f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def key_id_of(key: str) -> str | None:
    """The public id inside a presented key, or None when it is not shaped like one of ours."""
    if not key.startswith(PREFIX) or not KEY_SHAPE.fullmatch(key):
        return None
    return key[len(PREFIX) : len(PREFIX) + 8]


def static_id(key: str) -> str:
    """The accounting id of a static `[server] auth_keys` entry (never the key itself)."""
    return "static:" + hashlib.sha256(key.encode()).hexdigest()[:8]
