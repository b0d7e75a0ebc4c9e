"""Trading accounts: account types, opening (demo at once, live after review),
figures from the trading server, password changes, balances."""

import logging
import re
from datetime import timedelta

from flask import current_app
from sqlalchemy import func, select, update

from crm_app.admin.services import record_audit_log
from crm_app.auth.models import User
from crm_app.common import crypto
from crm_app.common.errors import NotFound, ServiceUnavailable, ValidationFailed
from crm_app.common.timeutil import utcnow
from crm_app.extensions import db
from crm_app.integrations.trading import gateway as gw
from crm_app.review.services import ReviewHandler, open_review_item, register_review_handler
from crm_app.trading.models import AccountApplication, AccountType, TradingAccount, TradingServer

log = logging.getLogger(__name__)

# Names of encryption purposes (key derivation labels), not secrets.
PASSWORD_PURPOSE = "trading-password"  # noqa: S105
MANAGER_PASSWORD_PURPOSE = "manager-password"  # noqa: S105
# A demo application still without its account after this long was left behind by a request
# that failed (longer than any request lives); it no longer counts as an account being opened.
DEMO_OPENING_STALE = timedelta(seconds=120)
IN_FLIGHT_STATUSES = ("pending", "creating")


# The gateway ------------------------------------------------------------------


def gateway_for(server):
    """The connector of a trading server (the simulator speaks the same MT5 Web API)."""
    from crm_app.integrations.trading.mt5_webapi import MT5WebAPIGateway

    return MT5WebAPIGateway(
        base_url=server.base_url,
        manager_login=server.manager_login,
        manager_password=crypto.decrypt(server.manager_password_encrypted, MANAGER_PASSWORD_PURPOSE),
        timezone=server.timezone,
        timeout=current_app.config.get("TRADING_TIMEOUT_SECONDS", 10),
    )


def trading_unavailable(exc):
    log.warning("trading server call failed: %r", exc)
    return ServiceUnavailable(code="trading_server_unavailable", errors={"_schema": [str(exc)[:200]]})


# MT password rules ---------------------------------------------------------------


def check_mt_password(password, field="password"):
    """MetaTrader's rule: 8 to 16 characters with lower case, upper case and digits."""
    if (
        not isinstance(password, str)
        or not 8 <= len(password) <= 16
        or not re.search(r"[a-z]", password)
        or not re.search(r"[A-Z]", password)
        or not re.search(r"\d", password)
    ):
        raise ValidationFailed(
            code="invalid_trading_password",
            errors={field: ["8 to 16 characters, with a lower-case letter, an upper-case letter and a digit."]},
        )


# Live money only ------------------------------------------------------------------


def is_live_account(account):
    """Real money: neither the account nor its server is demo."""
    return not account.is_demo and not account.server.is_demo


def require_live_account(account, field):
    """Demo balances are play money: they never enter or leave through the money flows."""
    if not is_live_account(account):
        raise ValidationFailed(
            code="demo_account_not_allowed",
            errors={field: [f"Account {account.login} is a demo account: only live accounts hold real money."]},
        )


def account_summary(account):
    """What a reviewer must see of a trading account, so a demo one can never pass for live."""
    if account is None:
        return None
    return {
        "id": account.id,
        "login": account.login,
        "server_id": account.server_id,
        "server_name": account.server.name,
        "server_type": account.server.server_type,
        "is_demo": not is_live_account(account),
        "currency": account.currency,
        "status": account.status,
    }


# Account types ---------------------------------------------------------------------


def kyc_approved(user_id):
    try:
        from crm_app.kyc.services import kyc_is_approved
    except ImportError:  # KYC not installed in this build: nothing to wait for
        return True
    return kyc_is_approved(user_id)


def open_account_types_query(user, platform=None, is_demo=None):
    query = (
        select(AccountType)
        .join(TradingServer, AccountType.server_id == TradingServer.id)
        .where(AccountType.enabled.is_(True), TradingServer.enabled.is_(True))
    )
    if platform:
        query = query.where(TradingServer.platform == platform)
    if is_demo is not None:
        query = query.where(TradingServer.is_demo.is_(is_demo))
    if not kyc_approved(user.id):
        # Live accounts need approved KYC: until then only demo types are open.
        query = query.where(TradingServer.is_demo.is_(True))
    return query


def list_account_types(user, page, size, trading_platform=None, is_demo=None):
    types = [
        t
        for t in db.session.scalars(
            open_account_types_query(user, trading_platform, is_demo).order_by(AccountType.sort_order, AccountType.id)
        )
        if user.user_type in (t.allowed_user_types or [])
    ]
    return types[(page - 1) * size : page * size], len(types)


def get_open_account_type(user, account_type_id, platform, is_demo):
    account_type = db.session.scalar(open_account_types_query(user).where(AccountType.id == account_type_id))
    if account_type is None or user.user_type not in (account_type.allowed_user_types or []):
        raise ValidationFailed(
            code="account_type_not_open",
            errors={"trading_account_type_id": ["No such account type open to you (live types need approved KYC)."]},
        )
    if account_type.platform != platform:
        raise ValidationFailed(errors={"trading_platform": [f"This account type is on {account_type.platform}."]})
    if is_demo is not None and account_type.is_demo != is_demo:
        raise ValidationFailed(
            errors={
                "trading_account_type_id": [
                    f"This account type is {'demo' if account_type.is_demo else 'live'}: "
                    f"choose a {'demo' if is_demo else 'live'} one."
                ]
            }
        )
    return account_type


# Opening accounts -----------------------------------------------------------------


def apply_for_account(user, values, client, is_demo=None):
    """#45/#14: demo accounts are opened at once; live ones wait for review."""
    account_type = get_open_account_type(user, values["trading_account_type_id"], values["trading_platform"], is_demo)
    if values["leverage"] not in (account_type.leverage_options or []):
        raise ValidationFailed(errors={"leverage": [f"One of {account_type.leverage_options}."]})
    if values["currency"] != account_type.currency:
        raise ValidationFailed(errors={"currency": [f"This account type is in {account_type.currency}."]})
    check_mt_password(values["password"])
    investor_password = values.get("observe_password") or None
    if investor_password:
        check_mt_password(investor_password, field="observe_password")
        if investor_password == values["password"]:
            raise ValidationFailed(errors={"observe_password": ["Must differ from the trading password."]})

    check_account_quota(user.id, account_type.is_demo)
    application = AccountApplication(
        user_id=user.id,
        account_type_id=account_type.id,
        server_id=account_type.server_id,
        leverage=values["leverage"],
        currency=account_type.currency,
        is_demo=account_type.is_demo,
        status="pending",
        main_password_encrypted=crypto.encrypt(values["password"], PASSWORD_PURPOSE),
        investor_password_encrypted=crypto.encrypt(investor_password, PASSWORD_PURPOSE),
    )
    db.session.add(application)
    db.session.flush()
    if not account_type.is_demo:
        open_review_item("account_application", user.id, application.id, object_ref=f"APP{application.id}")
    record_audit_log(
        "trading_account.apply",
        actor=user,
        client=client,
        target_type="account_application",
        target_id=application.id,
        details={"is_demo": account_type.is_demo},
    )
    db.session.commit()
    if account_type.is_demo:
        account = create_account_for_application(application.id)
        return application, account
    return application, None


def opening_answer(application, account):
    """#45's answer. `id` names a trading account only (the seed's #46 reads it): an
    application's id lives apart, in `application_id`, so it can never be taken for an
    account's id (ids of the two tables overlap)."""
    account_id = account.id if account is not None else None
    return {
        "id": account_id,
        "trading_account_id": account_id,
        "application_id": application.id,
        "status": "approved" if account is not None else "pending",
    }


def lock_user(user_id):
    """One account request of a user at a time, until it commits: two at once cannot both
    take the last place of a quota. FOR NO KEY UPDATE: rows referencing the user are not held up."""
    db.session.execute(select(User.id).where(User.id == user_id).with_for_update(key_share=True))


def check_account_quota(user_id, is_demo):
    """Demo accounts open at once, live applications waiting for review: 422 beyond the limit."""
    lock_user(user_id)
    if is_demo:
        limit = current_app.config["DEMO_ACCOUNTS_MAX_OPEN"]
        open_accounts = db.session.scalar(
            select(func.count()).where(
                TradingAccount.user_id == user_id,
                TradingAccount.is_demo.is_(True),
                TradingAccount.status == "active",
            )
        )
        being_opened = db.session.scalar(
            select(func.count()).where(
                AccountApplication.user_id == user_id,
                AccountApplication.is_demo.is_(True),
                AccountApplication.status.in_(IN_FLIGHT_STATUSES),
                AccountApplication.trading_account_id.is_(None),
                AccountApplication.created_at > utcnow() - DEMO_OPENING_STALE,
            )
        )
        if open_accounts + being_opened >= limit:
            raise ValidationFailed(
                code="demo_account_limit",
                errors={"trading_account_type_id": [f"At most {limit} demo accounts open at once."]},
            )
        return
    limit = current_app.config["LIVE_APPLICATIONS_MAX_PENDING"]
    pending = db.session.scalar(
        select(func.count()).where(
            AccountApplication.user_id == user_id,
            AccountApplication.is_demo.is_(False),
            AccountApplication.status.in_(IN_FLIGHT_STATUSES),
        )
    )
    if pending >= limit:
        raise ValidationFailed(
            code="application_limit",
            errors={
                "trading_account_type_id": [f"Live-account applications waiting for review: at most {limit} at once."]
            },
        )


def reserve_login(server_id):
    """Hand out the next login of the server's range, atomically."""
    reserved = db.session.execute(
        update(TradingServer)
        .where(TradingServer.id == server_id, TradingServer.next_login <= TradingServer.last_login)
        .values(next_login=TradingServer.next_login + 1)
        .returning(TradingServer.next_login, TradingServer.last_login)
    ).first()
    if reserved is None:
        raise ServiceUnavailable(code="login_range_exhausted", errors={"_schema": ["No free login on this server."]})
    login = reserved.next_login - 1
    warn_when_login_range_runs_low(server_id, login, reserved.last_login)
    return login


def first_login(server_id, next_login):
    """The lowest login the CRM handed out on the server (the range's start is not stored)."""
    lowest = [
        db.session.scalar(select(func.min(TradingAccount.login)).where(TradingAccount.server_id == server_id)),
        db.session.scalar(
            select(func.min(AccountApplication.creation_login)).where(AccountApplication.server_id == server_id)
        ),
        next_login,
    ]
    return min(value for value in lowest if value is not None)


def login_range_state(server):
    """Free logins left on the server, the range's size, and whether the free share is below
    LOGIN_RANGE_WARN_RATIO (shown to admins with the server)."""
    free = max(0, server.last_login - server.next_login + 1)
    total = max(1, server.last_login - first_login(server.id, server.next_login) + 1)
    low = free < current_app.config["LOGIN_RANGE_WARN_RATIO"] * total
    return {"free_logins": free, "total_logins": total, "low": low}


def warn_when_login_range_runs_low(server_id, login, last_login):
    """Audit-log the one reservation that takes the free share below the ratio.

    Reservations get distinct logins, so exactly one of them crosses: no repeat per request.
    """
    free_after = last_login - login
    total = last_login - first_login(server_id, login) + 1
    threshold = current_app.config["LOGIN_RANGE_WARN_RATIO"] * total
    if free_after < threshold <= free_after + 1:
        log.warning("trading server %s: %s of %s logins left", server_id, free_after, total)
        record_audit_log(
            "trading_server.login_range_low",
            target_type="trading_server",
            target_id=server_id,
            details={"free_logins": free_after, "total_logins": total, "login": login},
        )


def application_comment(application):
    return gw.operation_comment("APP", application.id)


def create_account_for_application(application_id, max_login_attempts=5):
    """Open the application's account on its server exactly once.

    The login is reserved and committed before the server is called; if the process
    dies after the server opened the account, the retry meets "account exists" on that
    login, recognises its own comment, and adopts the account instead of opening another.
    """
    application = db.session.get(AccountApplication, application_id, with_for_update={"of": AccountApplication})
    if application.trading_account_id:
        db.session.commit()
        return db.session.get(TradingAccount, application.trading_account_id)
    server = db.session.get(TradingServer, application.server_id)
    user = db.session.get(User, application.user_id)
    gateway = gateway_for(server)

    for _ in range(max_login_attempts):
        if application.creation_login is None:
            application.creation_login = reserve_login(server.id)
        application.status = "creating"
        db.session.commit()  # the intent: this login belongs to this application
        login = application.creation_login
        new_account = gw.NewAccount(
            login=login,
            group=application.account_type.mt_group,
            name=user.full_name or user.email,
            email=user.email,
            leverage=application.leverage,
            main_password=crypto.decrypt(application.main_password_encrypted, PASSWORD_PURPOSE),
            investor_password=crypto.decrypt(application.investor_password_encrypted, PASSWORD_PURPOSE)
            or generate_investor_password(),
            comment=application_comment(application),
        )
        try:
            gateway.create_account(new_account)
        except gw.AccountExists:
            existing = gateway.get_account(login)
            if existing.comment != application_comment(application):
                # Someone else holds this login on the server: take the next one.
                application.creation_login = None
                continue
        except (gw.TransientError, gw.AmbiguousError, gw.PermissionDenied) as exc:
            raise trading_unavailable(exc) from None
        except gw.InvalidPassword as exc:
            raise ValidationFailed(code="invalid_trading_password", errors={"password": [str(exc)]}) from None
        except gw.BusinessError as exc:
            raise ValidationFailed(code="trading_server_refused", errors={"_schema": [str(exc)]}) from None
        return record_created_account(application, server, login)
    raise ServiceUnavailable(code="login_range_exhausted", errors={"_schema": ["No free login on this server."]})


def generate_investor_password():
    import secrets
    import string

    # All four character kinds and 12 characters: accepted by the strictest MT4 and MT5 rules.
    alphabet = string.ascii_letters + string.digits + "#@!$%"
    while True:
        candidate = "".join(secrets.choice(alphabet) for _ in range(12))
        if all(re.search(kind, candidate) for kind in (r"[a-z]", r"[A-Z]", r"\d", r"[#@!$%]")):
            return candidate


def record_created_account(application, server, login):
    account = TradingAccount(
        user_id=application.user_id,
        server_id=server.id,
        account_type_id=application.account_type_id,
        login=login,
        leverage=application.leverage,
        currency=application.currency,
        is_demo=application.is_demo,
    )
    db.session.add(account)
    db.session.flush()
    application.trading_account_id = account.id
    application.status = "approved"
    # The account exists: the chosen passwords are no longer ours to keep.
    application.main_password_encrypted = None
    application.investor_password_encrypted = None
    record_audit_log(
        "trading_account.create",
        actor=None,
        target_type="trading_account",
        target_id=account.id,
        details={"login": login, "server_id": server.id, "application_id": application.id},
    )
    db.session.commit()
    return account


# Review of live applications --------------------------------------------------------


def approve_application(item, actor):
    account = create_account_for_application(item.object_id)
    item.details = {**(item.details or {}), "trading_account_id": account.id, "login": account.login}


def reject_application(item, actor):
    application = db.session.get(AccountApplication, item.object_id)
    application.status = "rejected"
    application.main_password_encrypted = None
    application.investor_password_encrypted = None


def describe_application(item):
    application = db.session.get(AccountApplication, item.object_id)
    if application is None:
        return {}
    return {
        "id": application.id,
        "status": application.status,
        "account_type": application.account_type.name,
        "server_id": application.server_id,
        "server_name": application.account_type.server.name,
        "server_type": application.account_type.server.server_type,
        "leverage": application.leverage,
        "currency": application.currency,
        "is_demo": application.is_demo or application.account_type.server.is_demo,
        "trading_account_id": application.trading_account_id,
        "login": application.creation_login,
        "trading_account": account_summary(db.session.get(TradingAccount, application.trading_account_id))
        if application.trading_account_id
        else None,
    }


register_review_handler(
    "account_application",
    ReviewHandler(approve=approve_application, reject=reject_application, describe=describe_application),
)


# Reading accounts ----------------------------------------------------------------------


def own_accounts_query(user, is_demo=None):
    query = select(TradingAccount).where(TradingAccount.user_id == user.id)
    if is_demo is not None:
        query = query.where(TradingAccount.is_demo.is_(is_demo))
    return query


def get_own_account(user, account_id):
    account = db.session.scalar(own_accounts_query(user).where(TradingAccount.id == account_id))
    if account is None:
        raise NotFound()
    return account


def refresh_figures(account):
    """Live figures from the server; when it cannot answer, the last known ones stay."""
    try:
        state = gateway_for(account.server).trade_state(account.login)
    except gw.TradingError as exc:
        log.info("figures of %s/%s not refreshed: %r", account.server.name, account.login, exc)
        return False
    account.balance, account.credit, account.equity = state.balance, state.credit, state.equity
    account.margin, account.margin_free, account.margin_level = state.margin, state.margin_free, state.margin_level
    account.figures_read_at = utcnow()
    return True


def list_own_accounts(user, page, size, is_demo=None):
    query = own_accounts_query(user, is_demo)
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    accounts = db.session.scalars(query.order_by(TradingAccount.id).limit(size).offset((page - 1) * size)).all()
    for account in accounts:
        refresh_figures(account)
    db.session.commit()
    return accounts, total


def get_own_account_with_figures(user, account_id):
    account = get_own_account(user, account_id)
    refresh_figures(account)
    db.session.commit()
    return account


def balances(user, directions):
    """#13: the accounts a deposit, withdrawal or transfer picker may offer in these fund
    directions. Money moves through live accounts only (`require_live_account`), so a demo
    account, or any account on a demo server, is never listed: picking it could only fail."""
    query = (
        own_accounts_query(user, is_demo=False)
        .join(AccountType, TradingAccount.account_type_id == AccountType.id)
        .join(TradingServer, TradingAccount.server_id == TradingServer.id)
        .where(
            AccountType.fund_direction.in_(directions),
            TradingAccount.status == "active",
            TradingServer.is_demo.is_(False),
        )
        .order_by(TradingAccount.id)
    )
    accounts = db.session.scalars(query).all()
    for account in accounts:
        refresh_figures(account)
    db.session.commit()
    return accounts


def change_account_password(user, account_id, kind, password, client):
    account = get_own_account(user, account_id)
    check_mt_password(password)
    try:
        gateway_for(account.server).change_password(
            account.login, password, "investor" if kind == "observe" else "main"
        )
    except gw.InvalidPassword as exc:
        raise ValidationFailed(code="invalid_trading_password", errors={"password": [str(exc)]}) from None
    except gw.TradingError as exc:
        raise trading_unavailable(exc) from None
    record_audit_log(
        "trading_account.password_change",
        actor=user,
        client=client,
        target_type="trading_account",
        target_id=account.id,
        details={"type": kind},
    )
    db.session.commit()
