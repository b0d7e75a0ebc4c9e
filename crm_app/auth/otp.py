"""TOTP two-factor sign-in (RFC 6238): enrolment, recovery codes, the check at login."""

import base64
import hashlib
import hmac
import io
import re
import secrets
import time

import pyotp
import segno
from flask import current_app
from sqlalchemy import delete, func, or_, select, update

from crm_app.admin.services import record_audit_log
from crm_app.auth import passwords
from crm_app.auth.models import OtpRecoveryCode, UserOtp
from crm_app.broker.services import get_setting
from crm_app.common import crypto
from crm_app.common.errors import Conflict, ValidationFailed
from crm_app.common.timeutil import utcnow
from crm_app.extensions import db

SECRET_PURPOSE = "totp-secret"  # noqa: S105 - the encryption key's purpose label, not a secret
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read off paper
TOTP_CODE = re.compile(r"[0-9]{6}")


def otp_invalid():
    return ValidationFailed(code="otp_invalid", errors={"otp_code": ["Wrong or already used code."]})


def enrolment(user_id, for_update=False):
    query = select(UserOtp).where(UserOtp.user_id == user_id)
    if for_update:
        query = query.with_for_update()
    return db.session.scalar(query)


def otp_enabled(user_id):
    return db.session.scalar(select(UserOtp.enabled_at).where(UserOtp.user_id == user_id)) is not None


def admin_otp_required():
    return bool(get_setting("broker").get("require_admin_otp"))


def must_enrol(user):
    """An admin who must turn TOTP on before the back office opens (broker setting)."""
    return user.user_type == "admin" and admin_otp_required() and not otp_enabled(user.id)


def status(user):
    row = enrolment(user.id)
    left = db.session.scalar(
        select(func.count())
        .select_from(OtpRecoveryCode)
        .where(OtpRecoveryCode.user_id == user.id, OtpRecoveryCode.used_at.is_(None))
    )
    return {
        "enabled": bool(row and row.enabled_at),
        "pending": bool(row and row.enabled_at is None),
        "recovery_codes_left": left if row and row.enabled_at else 0,
        "required": user.user_type == "admin" and admin_otp_required(),
    }


def _totp(row):
    return pyotp.TOTP(crypto.decrypt(row.secret_encrypted, SECRET_PURPOSE))


def qr_png_base64(text):
    buffer = io.BytesIO()
    segno.make(text, error="m", micro=False).save(buffer, kind="png", scale=5, border=2)
    return base64.b64encode(buffer.getvalue()).decode()


def start_enrolment(user, client):
    """A new secret (replacing a pending one); shown until a first code confirms it."""
    row = enrolment(user.id, for_update=True)
    if row is not None and row.enabled_at is not None:
        raise Conflict(code="otp_already_enabled")
    secret = pyotp.random_base32(length=32)
    if row is None:
        row = UserOtp(user_id=user.id)
        db.session.add(row)
    row.secret_encrypted = crypto.encrypt(secret, SECRET_PURPOSE)
    row.created_at = utcnow()
    row.last_used_step = None
    uri = pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=current_app.config["OTP_ISSUER"])
    record_audit_log("auth.otp_setup", actor=user, client=client, target_type="user", target_id=user.id)
    db.session.commit()
    return {"secret": secret, "otpauth_uri": uri, "qr_png_base64": qr_png_base64(uri)}


def _matching_step(row, code, now=None):
    """The time step `code` belongs to, within the window and after the last used one."""
    code = (code or "").strip()
    if not TOTP_CODE.fullmatch(code):
        return None
    totp = _totp(row)
    current = totp.timecode(now if now is not None else time.time())
    window = current_app.config["OTP_VALID_WINDOW"]
    for step in range(current - window, current + window + 1):
        if row.last_used_step is not None and step <= row.last_used_step:
            continue  # that code was used already, or an older one
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def _recovery_hash(user_id, code):
    normalised = re.sub(r"[\s-]", "", code or "").casefold()
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, f"otp-recovery|{user_id}|{normalised}".encode(), hashlib.sha256).hexdigest()


def _new_recovery_codes(user_id):
    codes = []
    for _ in range(current_app.config["OTP_RECOVERY_CODES"]):
        raw = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(10))
        codes.append(f"{raw[:5]}-{raw[5:]}")
    db.session.execute(delete(OtpRecoveryCode).where(OtpRecoveryCode.user_id == user_id))
    db.session.add_all(OtpRecoveryCode(user_id=user_id, code_hash=_recovery_hash(user_id, c)) for c in codes)
    return codes


def confirm_enrolment(user, code, client):
    """The first good code switches TOTP on; the recovery codes are answered this once."""
    row = enrolment(user.id, for_update=True)
    if row is not None and row.enabled_at is not None:
        raise Conflict(code="otp_already_enabled")
    if row is None:
        raise ValidationFailed(code="otp_not_started", errors={"otp_code": ["Start with POST /auth/2fa/setup."]})
    step = _matching_step(row, code)
    if step is None:
        raise otp_invalid()
    row.enabled_at = utcnow()
    row.last_used_step = step
    codes = _new_recovery_codes(user.id)
    record_audit_log("auth.otp_enabled", actor=user, client=client, target_type="user", target_id=user.id)
    db.session.commit()
    return {"recovery_codes": codes}


def _use_recovery_code(user, code, client):
    # One conditional UPDATE spends the code: of two sign-ins racing with it, one wins,
    # whether or not the database honours row locks (SQLite does not).
    spent = db.session.execute(
        update(OtpRecoveryCode)
        .where(
            OtpRecoveryCode.user_id == user.id,
            OtpRecoveryCode.code_hash == _recovery_hash(user.id, code),
            OtpRecoveryCode.used_at.is_(None),
        )
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    if spent != 1:
        return False
    record_audit_log("auth.otp_recovery_code_used", actor=user, client=client, target_type="user", target_id=user.id)
    return True


def _claim_step(user_id, step):
    """Record `step` as used unless it (or a later one) already was; True for the one winner."""
    claimed = db.session.execute(
        update(UserOtp)
        .where(UserOtp.user_id == user_id, or_(UserOtp.last_used_step.is_(None), UserOtp.last_used_step < step))
        .values(last_used_step=step)
        .execution_options(synchronize_session=False)
    ).rowcount
    return claimed == 1


def use_code(user, row, code, client):
    """True when `code` is a fresh TOTP code or an unused recovery code (then spent)."""
    step = _matching_step(row, code)
    if step is not None:
        # The row read above may be stale: only the conditional UPDATE decides (no replay).
        return _claim_step(user.id, step)
    if code and not TOTP_CODE.fullmatch(code.strip()):
        return _use_recovery_code(user, code, client)
    return False


def check_login_code(user, code, client):
    """At sign-in, for a user with TOTP on: raises otp_required or otp_invalid.

    The caller counts a refusal as a failed sign-in and commits what a good code spent.
    """
    row = enrolment(user.id, for_update=True)
    if row is None or row.enabled_at is None:
        return
    if not code:
        raise ValidationFailed(code="otp_required", errors={"otp_code": ["A code from your authenticator app."]})
    if not use_code(user, row, code, client):
        raise otp_invalid()


def disable(user, password, code, client):
    """Switch TOTP off: the password and a current code (or a recovery code) together."""
    row = enrolment(user.id, for_update=True)
    if row is None or row.enabled_at is None:
        raise Conflict(code="otp_not_enabled")
    if not passwords.verify_password(user.password_hash, password):
        record_audit_log("auth.otp_disable_failed", actor=user, client=client, target_type="user", target_id=user.id)
        db.session.commit()
        raise ValidationFailed(code="wrong_password", errors={"password": ["The password is wrong."]})
    if not use_code(user, row, code, client):
        db.session.commit()
        raise otp_invalid()
    db.session.delete(row)
    db.session.execute(delete(OtpRecoveryCode).where(OtpRecoveryCode.user_id == user.id))
    record_audit_log("auth.otp_disabled", actor=user, client=client, target_type="user", target_id=user.id)
    db.session.commit()
