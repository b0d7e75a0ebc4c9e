"""Broker configuration: branding, login pages, security switches, currencies, menus."""

import copy

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError

from crm_app.admin.services import record_audit_log
from crm_app.broker.models import EVERY_METHOD, BrokerSetting, Currency, Menu, PermissionAction
from crm_app.common.errors import Conflict, NotFound
from crm_app.common.reads import fetch_rows
from crm_app.extensions import db

I18N_EMPTY = {"en": "", "zh-CN": "", "zh-TW": ""}

DEFAULT_SETTINGS = {
    "broker": {
        "broker_name_i18n": {"en": "Broker", "zh-CN": "经纪商", "zh-TW": "經紀商"},
        "company_logo_url": "",
        "email": "",
        "login_page_logo_url": "",
        "support_phone": "",
        "timezone": "UTC",
        "watermark_logo_url": "",
        # Which scenes need an email code: the portal reads this to show the field.
        "email_code_required": {
            "register": True,
            "withdrawal": True,
            "transfer": True,
            "password_change": True,
        },
        # Admins must turn on TOTP two-factor sign-in before the back office opens to them.
        "require_admin_otp": False,
        # A bank or wire withdrawal pays only the client: its payee name must be the KYC legal name.
        "withdrawal_payee_must_match_kyc": True,
    },
    "login_page": {
        f"{portal}_{field}": copy.deepcopy(default)
        for portal in ("admin", "client", "ib")
        for field, default in (("login_bg_image_url", ""), ("login_copy_i18n", I18N_EMPTY), ("login_layout", "center"))
    },
}


def deep_merge(base, update):
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def get_setting(key):
    """The stored document over its defaults, so new fields always have a value."""
    row = db.session.get(BrokerSetting, key)
    return deep_merge(DEFAULT_SETTINGS[key], row.value if row else {})


def update_setting(key, changes, actor=None, client=None):
    """Apply a partial update (nested objects merged field by field)."""
    row = db.session.get(BrokerSetting, key, with_for_update=True)
    if row is None:
        row = BrokerSetting(key=key, value={})
        db.session.add(row)
    row.value = deep_merge(row.value or {}, changes)
    record_audit_log(
        f"config.{key}.update",
        actor=actor,
        client=client,
        target_type="config",
        target_id=key,
        details={"fields": sorted(changes)},
    )
    db.session.commit()
    return get_setting(key)


def email_code_required(scene):
    return bool(get_setting("broker")["email_code_required"].get(scene, True))


def payee_must_match_kyc():
    return bool(get_setting("broker").get("withdrawal_payee_must_match_kyc", True))


def broker_timezone():
    return get_setting("broker")["timezone"]


def broker_zone():
    """The broker's timezone as a ZoneInfo, read once per request (UTC if unusable)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from flask import g, has_request_context

    if has_request_context() and "broker_zone" in g:
        return g.broker_zone
    try:
        zone = ZoneInfo(broker_timezone())
    except (ZoneInfoNotFoundError, ValueError, OSError):
        zone = ZoneInfo("UTC")
    if has_request_context():
        g.broker_zone = zone
    return zone


# Currencies ---------------------------------------------------------------


def list_currencies(method="all", include_disabled=False):
    query = select(Currency).order_by(Currency.sort_order, Currency.code)
    if not include_disabled:
        query = query.where(Currency.enabled.is_(True))
    currencies = db.session.scalars(query).all()
    if method and method not in EVERY_METHOD:
        # A handful of rows: filtering the JSON list here is portable across databases.
        currencies = [c for c in currencies if method in (c.methods or [])]
    return currencies


def get_currency(currency_id):
    currency = db.session.get(Currency, currency_id)
    if currency is None:
        raise NotFound()
    return currency


def create_currency(values, actor=None, client=None):
    values = dict(values)
    values["code"] = values["code"].upper()
    currency = Currency(**values)
    db.session.add(currency)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise Conflict(code="currency_exists", errors={"code": ["This currency already exists."]}) from None
    record_audit_log(
        "currency.create",
        actor=actor,
        client=client,
        target_type="currency",
        target_id=currency.id,
        details={"code": currency.code},
    )
    db.session.commit()
    return currency


def update_currency(currency_id, values, actor=None, client=None):
    currency = get_currency(currency_id)
    for field, value in values.items():
        setattr(currency, field, value.upper() if field == "code" else value)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise Conflict(code="currency_exists", errors={"code": ["This currency already exists."]}) from None
    record_audit_log(
        "currency.update",
        actor=actor,
        client=client,
        target_type="currency",
        target_id=currency.id,
        details={"fields": sorted(values)},
    )
    db.session.commit()
    return currency


def delete_currency(currency_id, actor=None, client=None):
    currency = get_currency(currency_id)
    db.session.delete(currency)
    record_audit_log(
        "currency.delete",
        actor=actor,
        client=client,
        target_type="currency",
        target_id=currency_id,
        details={"code": currency.code},
    )
    db.session.commit()


# Menus and permissions ----------------------------------------------------


MENU_COLUMNS = (
    "id",
    "parent_id",
    "key",
    "title",
    "path",
    "icon",
    "action",
    "desc",
    "sort_order",
    "status",
    "user_type",
)


_menus = Menu.__table__
VISIBLE_MENUS_QUERY = (
    select(*(_menus.c[name] for name in MENU_COLUMNS))
    .where(_menus.c.user_type == bindparam("user_type"), _menus.c.status == 1)
    .order_by(_menus.c.sort_order, _menus.c.id)
)


def menu_tree(user_type):
    """The visible menus of a user type as a tree, children ordered by sort_order.

    Read as plain rows: every page load asks for it, and it needs no ORM objects.
    """
    rows = fetch_rows(VISIBLE_MENUS_QUERY, {"user_type": user_type})
    # Grouped by parent: children of a hidden menu are never reached, not promoted to roots.
    groups = {}
    nodes = []
    for row in rows:
        node = dict(zip(MENU_COLUMNS, row, strict=True))
        node["parent_id"] = node["parent_id"] or 0
        node["children"] = []
        groups.setdefault(node["parent_id"], []).append(node)
        nodes.append(node)
    for node in nodes:
        node["children"] = groups.get(node["id"], [])
    return groups.get(0, [])


def permission_actions(user_type):
    actions = db.session.scalars(
        select(PermissionAction).where(PermissionAction.user_type == user_type).order_by(PermissionAction.key)
    ).all()
    return {a.key: {"methods": dict(a.methods or {}), "path": a.path, "title": a.title, "url": a.url} for a in actions}


def permissions_for(user_type):
    return {"actions": permission_actions(user_type), "menus": menu_tree(user_type)}
