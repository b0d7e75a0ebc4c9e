"""Users, the IB tree, sign-in sessions and email codes."""

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm_app.common.timeutil import utcnow
from crm_app.extensions import db

USER_TYPES = ("client", "ib", "admin")
USER_STATUSES = ("enabled", "disabled")


class User(db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    # Case-folded email: uniqueness is case-insensitive on every database.
    email_key: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    user_type: Mapped[str] = mapped_column(String(16), default="client", index=True)
    status: Mapped[str] = mapped_column(String(16), default="enabled")
    first_name: Mapped[str] = mapped_column(String(100), default="")
    last_name: Mapped[str] = mapped_column(String(100), default="")
    parent_ib_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    referral_code: Mapped[str | None] = mapped_column(String(16), unique=True)
    # Bumped on password change: every token issued before it stops working.
    token_version: Mapped[int] = mapped_column(default=0)
    language: Mapped[str] = mapped_column(String(8), default="en")
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column()

    parent_ib: Mapped["User | None"] = relationship(remote_side=[id], foreign_keys=[parent_ib_id])

    @property
    def full_name(self):
        return " ".join(part for part in (self.first_name, self.last_name) if part)

    @property
    def is_ib(self):
        return self.user_type == "ib"


class IbTreePath(db.Model):
    """Closure table of the referral tree: one row per (ancestor, descendant) pair.

    "Everyone below IB X at any depth" is then a single indexed lookup on
    `ancestor_id`, never a recursive walk. Every user has a depth-0 row to itself.
    """

    __tablename__ = "ib_tree_paths"

    ancestor_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    descendant_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    depth: Mapped[int] = mapped_column()

    __table_args__ = (Index("ix_ib_tree_paths_descendant", "descendant_id", "depth"),)


class AuthSession(db.Model):
    """One sign-in: its access and refresh tokens carry its id, logout revokes it."""

    __tablename__ = "auth_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(255))


EMAIL_CODE_SCENES = ("register", "withdrawal", "transfer", "password_change")


class EmailCode(db.Model):
    __tablename__ = "email_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    email_key: Mapped[str] = mapped_column(String(254))
    scene: Mapped[str] = mapped_column(String(32))
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    resend_at: Mapped[datetime] = mapped_column()
    attempts: Mapped[int] = mapped_column(default=0)
    # Set when the code is used or killed by too many wrong tries.
    closed_at: Mapped[datetime | None] = mapped_column()

    __table_args__ = (Index("ix_email_codes_lookup", "email_key", "scene", "created_at"),)


class UserOtp(db.Model):
    """A user's TOTP (RFC 6238) second factor: pending until a first code confirms it."""

    __tablename__ = "user_otp"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    # Encrypted at rest (common/crypto.py): a database dump does not give the codes away.
    secret_encrypted: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    enabled_at: Mapped[datetime | None] = mapped_column()
    # The 30 s step of the last code accepted: a code is good once (no replay in its window).
    last_used_step: Mapped[int | None] = mapped_column(BigInteger)


class OtpRecoveryCode(db.Model):
    """One-time codes handed out at enrolment, for a lost authenticator (kept hashed)."""

    __tablename__ = "otp_recovery_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None] = mapped_column()
