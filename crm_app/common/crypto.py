"""Encryption at rest for secrets we must keep (manager passwords, bank numbers...).

Fernet (AES-128-CBC + HMAC) with a key derived from SECRET_KEY per purpose, so a
key for one kind of secret never decrypts another kind.
"""

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app

_fernets = {}


def _fernet(purpose):
    secret = current_app.config["SECRET_KEY"]
    cache_key = (secret, purpose)
    if cache_key not in _fernets:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"crm-at-rest", info=purpose.encode()).derive(
            secret.encode()
        )
        _fernets[cache_key] = Fernet(base64.urlsafe_b64encode(key))
    return _fernets[cache_key]


def encrypt(plaintext, purpose):
    if plaintext is None:
        return None
    return _fernet(purpose).encrypt(plaintext.encode()).decode()


def decrypt(token, purpose):
    if token is None:
        return None
    try:
        return _fernet(purpose).decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise ValueError(f"cannot decrypt a {purpose} value: wrong SECRET_KEY or corrupted data") from exc
