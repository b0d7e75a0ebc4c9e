"""argon2id password hashing and the password policy."""

import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app
from zxcvbn import zxcvbn

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


# ASVS 2.1: length and a common-password check, no composition rules (2.1.9).
PASSWORD_MIN_LENGTH = 10
PASSWORD_MAX_LENGTH = 128

# One code per rule, so a form can say which one failed (translated in common/i18n.py).
POLICY_MESSAGES = {
    "password_too_short": f"At least {PASSWORD_MIN_LENGTH} characters.",
    "password_too_long": f"At most {PASSWORD_MAX_LENGTH} characters.",
    "password_common": "This password is on a list of common passwords.",
    "password_guessable": "This password is too easy to guess; try a longer phrase of unrelated words.",
    "password_equals_email": "The password must not be your email address.",
    "password_reused": "The new password must differ from the current one.",
}


@functools.cache
def common_passwords():
    """zxcvbn's 30,000 most frequent passwords from public breaches (lower case)."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"])


def _email_inputs(email):
    if not email:
        return []
    email = email.strip().casefold()
    return [email, email.split("@", 1)[0]]


def password_rule_broken(password, email=None, old_password=None):
    """The code of the first rule the password breaks, or None."""
    if not isinstance(password, str) or len(password) < PASSWORD_MIN_LENGTH:
        return "password_too_short"
    if len(password) > PASSWORD_MAX_LENGTH:
        return "password_too_long"
    folded = password.casefold()
    if email and folded == email.strip().casefold():
        return "password_equals_email"
    if old_password is not None and password == old_password:
        return "password_reused"
    if folded in common_passwords():
        return "password_common"
    # The list holds few passwords of 10 characters or more: an estimate of the guesses
    # an attacker needs (dictionary words, l33t, keyboard walks, dates, the email's own
    # parts) refuses what a list cannot, such as "Passw0rd1234".
    minimum = current_app.config["PASSWORD_MIN_GUESSES_LOG10"]
    if (
        minimum > 0
        and zxcvbn(password, user_inputs=_email_inputs(email), max_length=PASSWORD_MAX_LENGTH)["guesses_log10"]
        < minimum
    ):
        return "password_guessable"
    return None


def check_password_policy(password, field="password", email=None, old_password=None):
    code = password_rule_broken(password, email=email, old_password=old_password)
    if code is not None:
        raise ValidationFailed(code=code, errors={field: [POLICY_MESSAGES[code]]})
