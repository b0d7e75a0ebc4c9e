"""argon2id password hashing and the password policy."""

import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app

from crm_app.common.errors import ValidationFailed


def hasher():
    cfg = current_app.config
    return PasswordHasher(
        time_cost=cfg["ARGON2_TIME_COST"],
        memory_cost=cfg["ARGON2_MEMORY_COST"],
        parallelism=cfg["ARGON2_PARALLELISM"],
    )


def hash_password(password):
    return hasher().hash(password)


def verify_password(password_hash, password):
    try:
        return hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash):
    return hasher().check_needs_rehash(password_hash)


# A hash of a random password, verified against when the email is unknown so that
# a login for a missing user costs as much time as one for a real user.
_dummy_hash_by_params = {}


def burn_verify_time(password):
    key = (current_app.config["ARGON2_TIME_COST"], current_app.config["ARGON2_MEMORY_COST"])
    if key not in _dummy_hash_by_params:
        _dummy_hash_by_params[key] = hash_password("not-a-real-password-0")
    verify_password(_dummy_hash_by_params[key], password)


def check_password_policy(password, field="password"):
    if (
        not isinstance(password, str)
        or len(password) < 8
        or len(password) > 128
        or not re.search(r"[A-Za-z]", password)
        or not re.search(r"\d", password)
    ):
        raise ValidationFailed(
            code="weak_password",
            errors={field: ["At least 8 characters (at most 128), with letters and digits."]},
        )
