"""Encryption at rest for document links (DESIGN.md, Security).

A Fernet key is derived from SECRET_KEY with HKDF, with a purpose label so the same
secret never keys two things. Stored values carry a prefix, so a value written
before encryption was switched on (or a plain one) still reads back.
"""

import base64
import functools

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app

PREFIX = "fernet:v1:"
PURPOSE = b"crm-kyc-document-links"


@functools.lru_cache(maxsize=8)
def _fernet(secret):
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=PURPOSE).derive(secret.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt_text(value):
    if not value:
        return value
    return PREFIX + _fernet(current_app.config["SECRET_KEY"]).encrypt(value.encode()).decode()


def decrypt_text(value):
    if not isinstance(value, str) or not value.startswith(PREFIX):
        return value
    try:
        return _fernet(current_app.config["SECRET_KEY"]).decrypt(value[len(PREFIX) :].encode()).decode()
    except InvalidToken:
        # SECRET_KEY changed: the link is unreadable, which is better than a 500 on every read.
        return None


def is_encrypted(value):
    return isinstance(value, str) and value.startswith(PREFIX)
