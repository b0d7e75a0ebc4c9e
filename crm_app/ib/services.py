"""IB portal rules: the referral code, link and QR code (#55), the IB's clients (#51) and
their trading accounts with live figures (#54).

An IB reads only users below it in the tree (`ib_tree_paths`, one indexed lookup on the
ancestor): a filter naming anyone else simply matches nothing.
"""

import io
import logging
import re
from urllib.parse import quote

import segno
from flask import current_app
from sqlalchemy import and_, false, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from crm_app.auth.models import IbTreePath, User
from crm_app.auth.services import generate_referral_code
from crm_app.auth.tree import descendants_query
from crm_app.common.errors import NotFound
from crm_app.common.timeutil import utcnow
from crm_app.extensions import db
from crm_app.integrations.trading import gateway as gw
from crm_app.kyc.models import KycProfile
from crm_app.kyc.services import kyc_view
from crm_app.sync.models import SyncedDeal
from crm_app.trading.models import AccountType, TradingAccount
from crm_app.trading.services import gateway_for

log = logging.getLogger(__name__)

SCOPES = ("direct", "all")
# #51's `kyc_status` filter: the seed's two words, plus the KYC's own statuses for precision.
KYC_FILTERS = ("approved", "disapproved", "filling", "pending", "rejected")
# Deals that are trades (not balance, credit or commission entries), as the sync names them.
TRADE_ACTIONS = ("buy", "sell")
MAX_LOGIN = 2**31 - 1  # trading_accounts.login is a 32-bit integer
REFERRAL_CODE_PATTERN = re.compile(r"[A-Z0-9]{4,16}")
QR_SCALE = 8
QR_BORDER = 4


# Referral (#55) ----------------------------------------------------------------------


def referral_link(code):
    """The public registration URL carrying the code (`IB_REFERRAL_URL`, `{code}` replaced)."""
    template = current_app.config["IB_REFERRAL_URL"]
    quoted = quote(code, safe="")
    if "{code}" in template:
        return template.replace("{code}", quoted)
    return f"{template}{'&' if '?' in template else '?'}invite_code={quoted}"


def referral_qr_url(code):
    base = (current_app.config.get("PUBLIC_BASE_URL") or "").rstrip("/")
    return f"{base}/api/v1/ib/referral-qr/{code}.png"


def ensure_referral_code(user):
    """The IB's code; an IB without one (created before codes existed) is given one now."""
    if user.referral_code:
        return user.referral_code
    for _ in range(5):
        code = generate_referral_code()
        try:
            db.session.execute(
                update(User).where(User.id == user.id, User.referral_code.is_(None)).values(referral_code=code)
            )
            db.session.commit()
        except IntegrityError:
            db.session.rollback()  # another user has this code: draw again
            continue
        # Another request may have set one first: the stored code is the one.
        return db.session.scalar(select(User.referral_code).where(User.id == user.id))
    raise RuntimeError("could not draw a free referral code")


def ib_profile(user):
    code = ensure_referral_code(user)
    return {
        "referral_code": code,
        "referral_link": referral_link(code),
        "qr_code_url": referral_qr_url(code),
        **kyc_view(user),
    }


def qr_png(text):
    """A QR code (not Micro QR) of `text` as PNG bytes."""
    buffer = io.BytesIO()
    segno.make(text, error="m", micro=False).save(buffer, kind="png", scale=QR_SCALE, border=QR_BORDER)
    return buffer.getvalue()


def referral_qr(code):
    """The link of an enabled IB's code and its QR code PNG; any other code does not exist."""
    code = (code or "").strip().upper()
    if not REFERRAL_CODE_PATTERN.fullmatch(code):
        raise NotFound()
    found = db.session.scalar(
        select(User.id).where(User.referral_code == code, User.user_type == "ib", User.status == "enabled")
    )
    if found is None:
        raise NotFound()
    link = referral_link(code)
    return link, qr_png(link)


# Clients (#51) -----------------------------------------------------------------------


def contains(column, text):
    """Case-insensitive partial match; `%` and `_` in the text match themselves."""
    return column.icontains(text, autoescape=True)


def full_name_column(user_model=User):
    return user_model.first_name + " " + user_model.last_name


def kyc_condition(kyc_status):
    if kyc_status == "disapproved":
        return or_(KycProfile.status.is_(None), KycProfile.status != "approved")
    if kyc_status == "filling":
        # A user who never saved a module has no profile row: that is `filling` too.
        return or_(KycProfile.status.is_(None), KycProfile.status == "filling")
    return KycProfile.status == kyc_status


ParentIb = aliased(User, name="parent_ib")


def clients_query(ib, filters):
    """Users below `ib`: its own (`direct`, the default) or at any depth (`all`), newest first."""
    query = (
        select(User, IbTreePath.depth, KycProfile.status, ParentIb)
        .join(
            IbTreePath,
            and_(IbTreePath.descendant_id == User.id, IbTreePath.ancestor_id == ib.id, IbTreePath.depth > 0),
        )
        .outerjoin(KycProfile, KycProfile.user_id == User.id)
        .outerjoin(ParentIb, ParentIb.id == User.parent_ib_id)
    )
    if filters.get("scope", "direct") == "direct":
        query = query.where(User.parent_ib_id == ib.id)
    if filters.get("client_user_id") is not None:
        query = query.where(User.id == filters["client_user_id"])
    if filters.get("kyc_status"):
        query = query.where(kyc_condition(filters["kyc_status"]))
    if filters.get("status"):
        query = query.where(User.status == filters["status"])
    if (filters.get("email") or "").strip():
        query = query.where(contains(User.email, filters["email"].strip()))
    if (filters.get("client_name") or "").strip():
        query = query.where(contains(full_name_column(), filters["client_name"].strip()))
    return query.order_by(User.id.desc())


def page_of(query, page, size):
    """One page of rows and the exact total of the filtered query."""
    total = db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = db.session.execute(query.limit(size).offset((page - 1) * size)).all()
    return rows, total


def latest_trade_times(user_ids):
    """{user id: time of the user's latest trade deal} over all their trading accounts.

    Per account, the newest trade deal is read from the (account, time) index backwards.
    """
    if not user_ids:
        return {}
    newest = (
        select(SyncedDeal.time)
        .where(SyncedDeal.trading_account_id == TradingAccount.id, SyncedDeal.action.in_(TRADE_ACTIONS))
        .order_by(SyncedDeal.time.desc())
        .limit(1)
        .correlate(TradingAccount)
        .scalar_subquery()
    )
    per_account = (
        select(TradingAccount.user_id.label("user_id"), newest.label("latest"))
        .where(TradingAccount.user_id.in_(user_ids))
        .subquery()
    )
    rows = db.session.execute(
        select(per_account.c.user_id, func.max(per_account.c.latest)).group_by(per_account.c.user_id)
    ).all()
    return {user_id: latest for user_id, latest in rows if latest is not None}


def display_name(user):
    return user.full_name or user.email


def client_row(ib, row, latest_trades):
    user, depth, kyc_status, parent = row
    return {
        "account": user.email,
        "client_id": user.id,
        "client_user_id": user.id,
        "created_at": user.created_at,
        "email": user.email,
        "first_name": user.first_name,
        "full_name": user.full_name,
        "kyc_status": kyc_status or "filling",
        "last_name": user.last_name,
        "latest_trade_time": latest_trades.get(user.id),
        "source": "direct" if user.parent_ib_id == ib.id else "sub_ib",
        "status": user.status,
        "updated_at": user.updated_at,
        "user_type": user.user_type,
        "ib_user_id": parent.id if parent is not None else None,
        "ib_user_name": display_name(parent) if parent is not None else "",
        "level": depth,
    }


def list_clients(ib, filters, page, size):
    rows, total = page_of(clients_query(ib, filters), page, size)
    latest = latest_trade_times([row[0].id for row in rows])
    return [client_row(ib, row, latest) for row in rows], total


# Clients' trading accounts (#54) ---------------------------------------------------


def client_accounts_query(ib, filters):
    """Trading accounts of users below `ib`: at any depth (`all`, the default) or its own clients'."""
    query = select(TradingAccount, User).join(User, User.id == TradingAccount.user_id)
    if filters.get("scope", "all") == "direct":
        query = query.where(User.parent_ib_id == ib.id)
    else:
        query = query.where(TradingAccount.user_id.in_(descendants_query(ib.id).scalar_subquery()))
    if filters.get("client_user_id") is not None:
        query = query.where(TradingAccount.user_id == filters["client_user_id"])
    if (filters.get("user_name") or "").strip():
        text = filters["user_name"].strip()
        query = query.where(or_(contains(full_name_column(), text), contains(User.email, text)))
    if filters.get("account_id"):
        login = int(filters["account_id"])
        # A login past the column's range names no account (and must not reach the database).
        query = query.where(TradingAccount.login == login if login <= MAX_LOGIN else false())
    if (filters.get("trading_account_type_name") or "").strip():
        name = filters["trading_account_type_name"].strip().lower()
        query = query.where(
            TradingAccount.account_type_id.in_(select(AccountType.id).where(func.lower(AccountType.name) == name))
        )
    if filters.get("is_demo") is not None:
        query = query.where(TradingAccount.is_demo.is_(filters["is_demo"]))
    return query.order_by(TradingAccount.id.desc())


# The server cannot answer now: asking again for its other accounts would only wait again.
SERVER_DOWN_ERRORS = (gw.TransientError, gw.AmbiguousError, gw.PermissionDenied)


def refresh_page_figures(accounts):
    """Live figures for a page of accounts; whatever cannot be read keeps its last known
    figures and their `figures_read_at`. A server that is down costs one failed call per
    page, not one per account (what `trading.services.refresh_figures` does for one)."""
    down, gateways = set(), {}
    for account in accounts:
        if account.server_id in down:
            continue
        try:
            if account.server_id not in gateways:
                gateways[account.server_id] = gateway_for(account.server)
            state = gateways[account.server_id].trade_state(account.login)
        except SERVER_DOWN_ERRORS as exc:
            log.info("figures of server %s not refreshed: %r", account.server.name, exc)
            down.add(account.server_id)
            continue
        except gw.TradingError as exc:
            log.info("figures of %s/%s not refreshed: %r", account.server.name, account.login, exc)
            continue
        except Exception:
            # A broken connector (or its settings) must not hide the accounts: show the last known.
            log.exception("figures of server %s not refreshed", account.server.name)
            down.add(account.server_id)
            continue
        account.balance, account.credit, account.equity = state.balance, state.credit, state.equity
        account.margin, account.margin_free = state.margin, state.margin_free
        account.margin_level = state.margin_level
        account.figures_read_at = utcnow()
    db.session.commit()


def client_account_row(row):
    account, owner = row
    return {
        "account_id": str(account.login),
        "balance": account.balance,
        "credit": account.credit,
        "equity": account.equity,
        "id": account.id,
        "leverage": account.leverage,
        "margin_level": account.margin_level,
        "trading_account_type_name": account.account_type.name,
        "trading_platform": account.server.platform,
        "trading_server_name": account.server.name,
        "user_name": display_name(owner),
        "client_user_id": owner.id,
        "currency": account.currency,
        "is_demo": account.is_demo,
        "figures_read_at": account.figures_read_at,
    }


def list_client_accounts(ib, filters, page, size):
    rows, total = page_of(client_accounts_query(ib, filters), page, size)
    refresh_page_figures([account for account, _ in rows])
    return [client_account_row(row) for row in rows], total
