"""Document links encrypted at rest (DESIGN.md, Security), on top of common.crypto.

Stored values carry a prefix, so a value written before encryption was switched
on (or a plain one) still reads back.
"""

from crm_app.common import crypto

PREFIX = "fernet:v1:"
PURPOSE = "kyc-document-links"


def encrypt_text(value):
    if not value:
        return value
    return PREFIX + crypto.encrypt(value, PURPOSE)


def decrypt_text(value):
    if not isinstance(value, str) or not value.startswith(PREFIX):
        return value
    try:
        return crypto.decrypt(value[len(PREFIX) :], PURPOSE)
    except ValueError:
        # SECRET_KEY changed: the link is unreadable, which is better than a 500 on every read.
        return None


def is_encrypted(value):
    return isinstance(value, str) and value.startswith(PREFIX)
