"""Sign-up, sign-in, tokens, password change and email codes."""

import hashlib
import hmac
import logging
import secrets
import string
import uuid
from datetime import timedelta

from flask import current_app
from flask_jwt_extended import create_access_token, create_refresh_token
from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError

from crm_app.admin.services import record_audit_log
from crm_app.auth import otp, passwords
from crm_app.auth.models import AuthSession, EmailCode, User
from crm_app.auth.tree import add_tree_node
from crm_app.broker.services import email_code_required
from crm_app.common.errors import (
    Forbidden,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    ValidationFailed,
)
from crm_app.common.reads import fetch_rows
from crm_app.common.runtime import runtime
from crm_app.common.timeutil import to_unix, utcnow
from crm_app.extensions import db

log = logging.getLogger(__name__)


def email_key(email):
    return email.strip().casefold()


def find_user_by_email(email):
    return db.session.scalar(select(User).where(User.email_key == email_key(email)))


# Tokens -------------------------------------------------------------------


def start_session(user, client):
    """A sign-in: one session row, whose id both tokens carry (logout revokes both)."""
    now = utcnow()
    session = AuthSession(
        id=uuid.uuid4().hex,
        user_id=user.id,
        created_at=now,
        expires_at=now + current_app.config["JWT_REFRESH_TOKEN_EXPIRES"],
        ip=client.ip if client else None,
        user_agent=client.user_agent if client else None,
    )
    db.session.add(session)
    return session


def token_claims(user, session):
    claims = {"sid": session.id, "ver": user.token_version, "utype": user.user_type}
    if otp.must_enrol(user):
        # The broker requires TOTP of admins: until this one turns it on, the token opens
        # only the enrolment routes (and logout); see `Blueprint.login_required`.
        claims["otp_enrol"] = True
    return claims


def issue_tokens(user, session):
    claims = token_claims(user, session)
    return {
        "token": create_access_token(identity=str(user.id), additional_claims=claims),
        "refresh_token": create_refresh_token(identity=str(user.id), additional_claims=claims),
    }


class Caller:
    """The user a request's token speaks for.

    The token check reads only what every request needs (id, type, status, token
    version) as one plain row; any other attribute loads the ORM `User` once, so
    views and services can treat the caller as a `User`.
    """

    __slots__ = ("id", "user_type", "status", "token_version", "_user")

    def __init__(self, id, user_type, status, token_version):
        set_slot = object.__setattr__
        set_slot(self, "id", id)
        set_slot(self, "user_type", user_type)
        set_slot(self, "status", status)
        set_slot(self, "token_version", token_version)
        set_slot(self, "_user", None)

    def __getattr__(self, name):
        return getattr(self.orm_user(), name)

    def __setattr__(self, name, value):
        # Changes go to the ORM user (the session writes them); the copy here follows.
        setattr(self.orm_user(), name, value)
        if name in ("user_type", "status", "token_version"):
            object.__setattr__(self, name, value)

    def orm_user(self):
        if self._user is None:
            object.__setattr__(self, "_user", db.session.get(User, self.id))
        return self._user

    @property
    def is_ib(self):
        return self.user_type == "ib"

    def __eq__(self, other):
        return getattr(other, "id", None) == self.id and isinstance(other, (Caller, User))

    def __hash__(self):
        return hash(("user", self.id))

    def __repr__(self):
        return f"<Caller {self.id} {self.user_type}>"


_users = User.__table__
_sessions = AuthSession.__table__
TOKEN_USER_QUERY = (
    select(_users.c.id, _users.c.user_type, _users.c.status, _users.c.token_version, _sessions.c.revoked_at)
    .join(_sessions, _sessions.c.user_id == _users.c.id)
    .where(_users.c.id == bindparam("user_id"), _sessions.c.id == bindparam("session_id"))
)


def load_token_user(payload):
    """The caller a token speaks for, or None when its session was revoked.

    One plain-row query per request: the user joined with the token's session.
    """
    try:
        user_id = int(payload["sub"])
        session_id = str(payload["sid"])
        version = int(payload["ver"])
    except (KeyError, TypeError, ValueError):
        return None
    if not -(2**63) <= user_id < 2**63:
        return None
    rows = fetch_rows(TOKEN_USER_QUERY, {"user_id": user_id, "session_id": session_id})
    if not rows:
        return None
    user_id, user_type, status, token_version, revoked_at = rows[0]
    if revoked_at is not None or token_version != version:
        return None
    return Caller(user_id, user_type, status, token_version)


def refresh_access_token(user, payload):
    session = db.session.get(AuthSession, payload["sid"])
    return {"token": create_access_token(identity=str(user.id), additional_claims=token_claims(user, session))}


def logout(user, payload, client):
    session = db.session.get(AuthSession, payload["sid"])
    if session is not None and session.revoked_at is None:
        session.revoked_at = utcnow()
    record_audit_log("auth.logout", actor=user, client=client, target_type="user", target_id=user.id)
    db.session.commit()


def ensure_enabled(user):
    if user.status != "enabled":
        raise Forbidden(code="user_disabled")


# Login ----------------------------------------------------------------------


def _email_digest(email):
    return hashlib.sha256(email_key(email).encode()).hexdigest()


def _login_throttle_keys(email, client):
    """The counters that lock: one (account, address) pair, and one address for all accounts.

    An account's failures from every address together never lock it (anyone could lock
    its owner out); they ask for a captcha instead (`_account_failures_key`).
    """
    ip = client.ip if client and client.ip else ""
    keys = [(f"login:pair:{_email_digest(email)}:{ip}", "LOGIN_MAX_FAILURES")]
    if ip:
        keys.append((f"login:ip:{ip}", "LOGIN_MAX_FAILURES_PER_IP"))
    return keys


def _account_failures_key(email):
    return f"login:email:{_email_digest(email)}"


def captcha_configured():
    from crm_app.integrations.captcha import CaptchaSettings

    return not CaptchaSettings.from_config(current_app.config).missing_fields()


def check_login_throttle(email, client):
    counters = runtime().counters
    for key, limit_name in _login_throttle_keys(email, client):
        count, retry_after = counters.get(key)
        if count >= current_app.config[limit_name]:
            raise TooManyRequests(retry_after)


def login_captcha_required(email):
    """Captcha on every sign-in, or for an account that failed too often from anywhere."""
    if current_app.config["CAPTCHA_ENABLED"]:
        return True
    count, _ = runtime().counters.get(_account_failures_key(email))
    return count >= current_app.config["LOGIN_CAPTCHA_AFTER_FAILURES"] and captcha_configured()


def record_login_failure(email, client):
    counters = runtime().counters
    window = current_app.config["LOGIN_FAILURE_WINDOW_SECONDS"]
    for key, _ in _login_throttle_keys(email, client):
        counters.hit(key, window)
    counters.hit(_account_failures_key(email), window)


def reset_login_failures(email, client):
    counters = runtime().counters
    counters.reset(_login_throttle_keys(email, client)[0][0])
    counters.reset(_account_failures_key(email))


def login(email, password, client, captcha=None, otp_code=None):
    """Check throttles, captcha, password and TOTP code; answer tokens and the user."""
    check_login_throttle(email, client)
    if login_captcha_required(email):
        check_captcha_headers(captcha or {}, client)

    user = find_user_by_email(email)
    if user is None:
        passwords.burn_verify_time(password)
    if user is None or not passwords.verify_password(user.password_hash, password):
        record_login_failure(email, client)
        record_audit_log(
            "auth.login_failed",
            actor=user,
            client=client,
            target_type="user",
            target_id=user.id if user else None,
            details={"email": email[:254]},
        )
        db.session.commit()
        raise Unauthorized(code="invalid_credentials")
    if user.status != "enabled":
        record_audit_log(
            "auth.login_refused_disabled", actor=user, client=client, target_type="user", target_id=user.id
        )
        db.session.commit()
        raise Forbidden(code="user_disabled")
    try:
        otp.check_login_code(user, otp_code, client)
    except ValidationFailed as exc:
        # A missing or wrong code counts like a wrong password: the code is not guessed
        # faster than the password was.
        db.session.rollback()
        record_login_failure(email, client)
        record_audit_log(
            "auth.login_failed",
            actor=user,
            client=client,
            target_type="user",
            target_id=user.id,
            details={"email": email[:254], "reason": exc.code},
        )
        db.session.commit()
        raise

    reset_login_failures(email, client)
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash_password(password)
    user.last_login_at = utcnow()
    session = start_session(user, client)
    record_audit_log("auth.login", actor=user, client=client, target_type="user", target_id=user.id)
    db.session.commit()
    return user, issue_tokens(user, session)


def verify_captcha_ticket(ticket, randstr, user_ip):
    """Ask Tencent Cloud whether a captcha ticket is good (False: it is not)."""
    from crm_app.integrations.captcha import CaptchaSettings, CaptchaUnavailable, verify_captcha

    try:
        return verify_captcha(
            CaptchaSettings.from_config(current_app.config), ticket=ticket, randstr=randstr, user_ip=user_ip or ""
        )
    except CaptchaUnavailable as exc:
        log.error("captcha service unavailable: %s", exc)
        raise ServiceUnavailable(code="captcha_unavailable") from None


def verify_captcha_for_app(app_id, ticket, randstr, user_ip):
    """#5: only our own captcha app can be checked (we hold only its secret)."""
    our_app_id = current_app.config["CAPTCHA_APP_ID"]
    if not our_app_id or app_id != our_app_id:  # no captcha app configured: no ticket is ours
        return False
    return verify_captcha_ticket(ticket, randstr, user_ip)


def check_captcha_headers(captcha, client):
    ticket, randstr = captcha.get("ticket"), captcha.get("randstr")
    if not ticket or not randstr:
        raise ValidationFailed(
            code="captcha_required",
            errors={"Captcha-Token": ["Required when captcha is enabled."], "Captcha-Randstr": ["Required."]},
        )
    if not verify_captcha_ticket(ticket, randstr, client.ip if client else ""):
        raise ValidationFailed(code="captcha_failed", errors={"Captcha-Token": ["Captcha verification failed."]})


# Registration -----------------------------------------------------------------


def generate_referral_code():
    alphabet = string.ascii_uppercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


def find_ib_by_invite_code(invite_code):
    ib = db.session.scalar(select(User).where(User.referral_code == invite_code.strip().upper()))
    if ib is None or ib.user_type != "ib" or ib.status != "enabled":
        raise ValidationFailed(code="invalid_invite_code", errors={"invite_code": ["Unknown invitation code."]})
    return ib


def email_taken_error():
    return ValidationFailed(code="email_taken", errors={"email": ["This email is already registered."]})


def register_client(email, password, client, email_code=None, invite_code=None):
    passwords.check_password_policy(password, email=email)
    parent = find_ib_by_invite_code(invite_code) if invite_code else None
    if email_code_required("register"):
        # The code first: a wrong or missing code answers alike for a known address and a
        # new one, so only the address's owner learns that it is registered.
        consume_email_code(email, "register", email_code)
    if find_user_by_email(email) is not None:
        raise email_taken_error()

    user = User(
        email=email.strip(),
        email_key=email_key(email),
        password_hash=passwords.hash_password(password),
        user_type="client",
        status="enabled",
        parent_ib_id=parent.id if parent else None,
        language=client.language if client else "en",
    )
    db.session.add(user)
    try:
        db.session.flush()
    except IntegrityError:
        # Two sign-ups with one email at once: the database's unique index decides.
        db.session.rollback()
        raise email_taken_error() from None
    add_tree_node(user)
    session = start_session(user, client)
    record_audit_log(
        "auth.register",
        actor=user,
        client=client,
        target_type="user",
        target_id=user.id,
        details={"parent_ib_id": user.parent_ib_id},
    )
    db.session.commit()
    return user, issue_tokens(user, session)


# Password change --------------------------------------------------------------


def change_password(user, old_password, new_password, client, email_code=None):
    if not passwords.verify_password(user.password_hash, old_password):
        record_audit_log(
            "auth.password_change_failed", actor=user, client=client, target_type="user", target_id=user.id
        )
        db.session.commit()
        raise ValidationFailed(code="wrong_old_password", errors={"old_password": ["The current password is wrong."]})
    passwords.check_password_policy(new_password, field="new_password", email=user.email, old_password=old_password)
    if email_code_required("password_change"):
        consume_email_code(user.email, "password_change", email_code)
    user.password_hash = passwords.hash_password(new_password)
    # Every token issued before now stops working, the caller's own included.
    user.token_version += 1
    now = utcnow()
    for session in db.session.scalars(
        select(AuthSession).where(AuthSession.user_id == user.id, AuthSession.revoked_at.is_(None))
    ):
        session.revoked_at = now
    record_audit_log("auth.password_change", actor=user, client=client, target_type="user", target_id=user.id)
    db.session.commit()


# Email codes ------------------------------------------------------------------


def hash_email_code(email, scene, code):
    # Keyed: a 6-digit code's plain hash would be reversed in a millisecond.
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, f"{email_key(email)}|{scene}|{code}".encode(), hashlib.sha256).hexdigest()


def latest_open_code(email, scene, for_update=False):
    query = (
        select(EmailCode)
        .where(EmailCode.email_key == email_key(email), EmailCode.scene == scene, EmailCode.closed_at.is_(None))
        .order_by(EmailCode.created_at.desc(), EmailCode.id.desc())
        .limit(1)
    )
    if for_update:
        query = query.with_for_update()
    return db.session.scalar(query)


# Scenes whose code a signed-in caller uses on their own account: it goes to their address.
OWN_ADDRESS_SCENES = ("withdrawal", "transfer", "password_change")


def email_code_recipient(email, scene, caller=None):
    """Where #6 sends the code. A signed-in caller's `withdrawal`, `transfer` and
    `password_change` codes go to their own address: `email` may be left out, and naming
    another address is a 422 `email_not_yours` (the code could not be used there anyway).
    Otherwise (`register`, or no token) `email` is required."""
    if caller is not None and scene in OWN_ADDRESS_SCENES:
        if email is None or email_key(email) == email_key(caller.email):
            return caller.email
        raise ValidationFailed(
            code="email_not_yours", errors={"email": ["Must be your own address, or left out to use it."]}
        )
    if email is None:
        raise ValidationFailed(errors={"email": ["Missing data for required field."]})
    return email


def request_email_code(email, scene, received_at, client, caller=None):
    """Send a fresh code for (email, scene); answers (can_resend_at, expired_at).
    `caller` is the signed-in user, if any (see `email_code_recipient`)."""
    email = email_code_recipient(email, scene, caller)
    cfg = current_app.config
    now = utcnow()
    skew = cfg["EMAIL_CODE_CLOCK_SKEW_SECONDS"]
    if abs(received_at - to_unix(now)) > skew:
        raise ValidationFailed(
            code="clock_skew", errors={"received_at": [f"Must be within {skew} seconds of the server time."]}
        )
    if client and client.ip:
        count = runtime().counters.hit(f"email-code:ip:{client.ip}", 3600)
        if count > cfg.get("EMAIL_CODE_MAX_PER_IP_HOUR", 30):
            raise TooManyRequests(runtime().counters.get(f"email-code:ip:{client.ip}")[1])

    # The delay runs from the latest code, open or not: killing a code with wrong
    # tries must not buy a fresh one (and fresh tries) sooner.
    latest = db.session.scalar(
        select(EmailCode)
        .where(EmailCode.email_key == email_key(email), EmailCode.scene == scene)
        .order_by(EmailCode.created_at.desc(), EmailCode.id.desc())
        .limit(1)
        .with_for_update()
    )
    if latest is not None and latest.resend_at > now:
        raise TooManyRequests((latest.resend_at - now).total_seconds(), code="email_code_too_soon")
    if latest is not None and latest.closed_at is None:
        latest.closed_at = now

    code = f"{secrets.randbelow(10**6):06d}"
    entry = EmailCode(
        email_key=email_key(email),
        scene=scene,
        code_hash=hash_email_code(email, scene, code),
        created_at=now,
        expires_at=now + timedelta(seconds=cfg["EMAIL_CODE_TTL_SECONDS"]),
        resend_at=now + timedelta(seconds=cfg["EMAIL_CODE_RESEND_SECONDS"]),
    )
    db.session.add(entry)
    user = find_user_by_email(email)
    # Answer the same whether the address is known or not (no account enumeration),
    # but only mail a code where it can be used.
    should_send = (user is None) if scene == "register" else (user is not None)
    record_audit_log(
        "auth.email_code_requested",
        actor=user,
        client=client,
        target_type="email_code",
        details={"scene": scene, "sent": should_send},
    )
    db.session.commit()
    if should_send:
        from workers.mail import enqueue_email_code

        enqueue_email_code(
            email.strip(), scene, code, client.language if client else "en", cfg["EMAIL_CODE_TTL_SECONDS"]
        )
    return {"can_resend_at": to_unix(entry.resend_at), "expired_at": to_unix(entry.expires_at)}


def consume_email_code(email, scene, code):
    """Check and use up the code, in the caller's transaction; wrong tries are kept."""
    invalid = ValidationFailed(code="email_code_invalid", errors={"email_code": ["Wrong or expired code."]})
    if not code:
        raise ValidationFailed(code="email_code_required", errors={"email_code": ["An email code is required."]})
    now = utcnow()
    entry = latest_open_code(email, scene, for_update=True)
    if entry is None or entry.expires_at <= now:
        raise invalid
    if not hmac.compare_digest(entry.code_hash, hash_email_code(email, scene, str(code).strip())):
        entry.attempts += 1
        if entry.attempts >= current_app.config["EMAIL_CODE_MAX_ATTEMPTS"]:
            entry.closed_at = now
        # The wrong try must count even though the caller's action fails.
        db.session.commit()
        raise invalid
    entry.closed_at = now
