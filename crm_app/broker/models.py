"""Broker configuration: settings documents, currencies, menus and permission actions."""

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from crm_app.common.timeutil import utcnow
from crm_app.extensions import db

FUNDING_METHODS = ("bank_transfer", "international_wire_transfer", "cryptocurrency")
# The seed's enum says `all` and its text says "normal为全部": both mean no method filter.
EVERY_METHOD = ("all", "normal")


class BrokerSetting(db.Model):
    """A named JSON document (`broker`, `login_page`, `security`), edited by admins."""

    __tablename__ = "broker_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Currency(db.Model):
    __tablename__ = "currencies"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    name_en: Mapped[str] = mapped_column(String(64))
    name_zh: Mapped[str] = mapped_column(String(64))
    # Funding methods this currency may be used with.
    methods: Mapped[list] = mapped_column(JSON, default=list)
    enabled: Mapped[bool] = mapped_column(default=True)
    sort_order: Mapped[int] = mapped_column(default=0)


class Menu(db.Model):
    __tablename__ = "menus"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_type: Mapped[str] = mapped_column(String(16))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("menus.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(128))
    path: Mapped[str] = mapped_column(String(255), default="")
    icon: Mapped[str] = mapped_column(String(64), default="")
    action: Mapped[str] = mapped_column(String(64), default="")
    desc: Mapped[str] = mapped_column(String(255), default="")
    sort_order: Mapped[int] = mapped_column(default=0)
    # 1 shown, 0 hidden (the seed's integer status).
    status: Mapped[int] = mapped_column(default=1)

    __table_args__ = (
        UniqueConstraint("user_type", "key", name="uq_menus_user_type_key"),
        Index("ix_menus_user_type", "user_type", "sort_order"),
    )


class PermissionAction(db.Model):
    """One entry of the seed's `actions` map: an API path and the methods allowed on it."""

    __tablename__ = "permission_actions"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_type: Mapped[str] = mapped_column(String(16))
    key: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(128))
    path: Mapped[str] = mapped_column(String(255))
    url: Mapped[str] = mapped_column(String(255))
    methods: Mapped[dict] = mapped_column(JSON, default=dict)

    __table_args__ = (UniqueConstraint("user_type", "key", name="uq_permission_actions_user_type_key"),)
