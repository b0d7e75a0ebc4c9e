"""Every change of money on a trading server, exactly once.

An operation is a committed intent (`pending`). Sending it first flips it to
`unknown` in its own committed UPDATE (so two runners can never both send it),
then calls the server with the comment `<KIND>#<key>`:

- the server answers with a ticket: `done`;
- it refuses on the merits (no money, bad parameters): `failed`;
- it could not have applied it (connection refused, busy): back to `pending`;
- the answer is lost (timeout after sending) or the process dies: it stays
  `unknown`, and the reconciler asks the server for a deal with that comment
  before anything is sent again.

Whoever asked for the operation (a deposit, a withdrawal...) registers what
happens when it ends, so a late settlement by the reconciler finishes it too.
"""

import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import select, update

from crm_app.admin.services import record_audit_log
from crm_app.common.timeutil import utcnow
from crm_app.extensions import db
from crm_app.integrations.trading import gateway as gw
from crm_app.money.models import BalanceOperation

log = logging.getLogger(__name__)

KEY_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"


@dataclass(frozen=True)
class OperationCallbacks:
    """What the source of an operation does when it ends (called in the settling transaction)."""

    on_done: callable
    on_failed: callable


CALLBACKS: dict[str, OperationCallbacks] = {}


def register_operation_callbacks(source_type, callbacks):
    CALLBACKS[source_type] = callbacks


def new_operation_key():
    return "".join(secrets.choice(KEY_ALPHABET) for _ in range(16))


def open_operation(account, kind, amount, source_type, source_id):
    """The intent row (the caller commits it, with whatever asked for it)."""
    operation = BalanceOperation(
        key=new_operation_key(),
        kind=kind,
        trading_account_id=account.id,
        login=account.login,
        amount=amount,
        state="pending",
        source_type=source_type,
        source_id=source_id,
    )
    gw.operation_comment(kind, operation.key)  # fails early if the comment would not fit
    db.session.add(operation)
    return operation


def _gateway(operation):
    from crm_app.trading.services import gateway_for

    return gateway_for(operation.trading_account.server)


def _claim_for_sending(operation_id):
    now = utcnow()
    claimed = db.session.execute(
        update(BalanceOperation)
        .where(BalanceOperation.id == operation_id, BalanceOperation.state == "pending")
        .values(
            state="unknown",
            attempts=BalanceOperation.attempts + 1,
            last_attempt_at=now,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    return bool(claimed)


def run_operation(operation_id):
    """Send a pending operation once and settle what the server answered."""
    if not _claim_for_sending(operation_id):
        return db.session.get(BalanceOperation, operation_id)
    operation = db.session.get(BalanceOperation, operation_id)
    db.session.refresh(operation)
    try:
        ticket = _gateway(operation).balance_operation(operation.login, operation.amount, operation.comment)
    except gw.AmbiguousError as exc:
        log.warning("balance operation %s: answer lost (%r); the reconciler will settle it", operation.key, exc)
        operation.error = f"answer lost: {exc}"[:2000]
        db.session.commit()
        return operation
    except gw.TransientError as exc:
        operation.state = "pending"
        operation.error = f"not applied, will retry: {exc}"[:2000]
        db.session.commit()
        return operation
    except (gw.BusinessError, gw.PermissionDenied) as exc:
        return settle(operation, failed_reason=f"{type(exc).__name__}: {exc}")
    return settle(operation, ticket=ticket)


def settle(operation, ticket=None, failed_reason=None):
    """Record the end of an operation and let its source finish, in one transaction."""
    locked = db.session.scalar(
        select(BalanceOperation)
        .where(BalanceOperation.id == operation.id)
        .with_for_update(of=BalanceOperation)
        .execution_options(populate_existing=True)
    )
    if locked.state in ("done", "failed"):
        db.session.commit()
        return locked
    callbacks = CALLBACKS.get(locked.source_type)
    now = utcnow()
    if failed_reason is None:
        locked.state, locked.ticket, locked.error = "done", ticket, None
    else:
        locked.state, locked.error = "failed", failed_reason[:2000]
    locked.completed_at = now
    if callbacks is not None:
        (callbacks.on_done if failed_reason is None else callbacks.on_failed)(locked)
    record_audit_log(
        f"balance_operation.{locked.state}",
        target_type="balance_operation",
        target_id=locked.id,
        details={
            "kind": locked.kind,
            "login": locked.login,
            "amount": str(locked.amount),
            "ticket": ticket,
            "source": f"{locked.source_type}:{locked.source_id}",
            "error": failed_reason,
        },
    )
    db.session.commit()
    return locked


def reconcile_operation(operation_id, grace_seconds=None):
    """Settle an operation left `unknown` by a lost answer or a crash, or resend a pending one."""
    operation = db.session.get(BalanceOperation, operation_id)
    if operation is None or operation.state in ("done", "failed"):
        return operation
    if operation.state == "pending":
        return run_operation(operation_id)
    grace = timedelta(seconds=grace_seconds if grace_seconds is not None else reconcile_grace_seconds())
    if operation.last_attempt_at and utcnow() - operation.last_attempt_at < grace:
        return operation  # the first call may still be on its way
    since = operation.created_at - timedelta(minutes=5)
    try:
        deal = _gateway(operation).find_balance_operation(operation.login, operation.comment, since)
    except gw.TradingError as exc:
        log.info("balance operation %s: server not reachable for reconciling (%r)", operation.key, exc)
        return operation
    if deal is not None:
        return settle(operation, ticket=deal.ticket)
    # Not on the server after the grace period: it was never applied. Send it again.
    db.session.execute(
        update(BalanceOperation)
        .where(BalanceOperation.id == operation.id, BalanceOperation.state == "unknown")
        .values(state="pending", updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return run_operation(operation.id)


def reconcile_grace_seconds():
    return 2 * current_app.config.get("TRADING_TIMEOUT_SECONDS", 10) + 5


def open_operation_ids(limit=500):
    """Operations that are not finished, oldest first (what the reconciler works through)."""
    return db.session.scalars(
        select(BalanceOperation.id)
        .where(BalanceOperation.state.in_(("pending", "unknown")))
        .order_by(BalanceOperation.created_at)
        .limit(limit)
    ).all()


def reconcile_open_operations(grace_seconds=None):
    settled = 0
    for operation_id in open_operation_ids():
        operation = reconcile_operation(operation_id, grace_seconds=grace_seconds)
        settled += operation is not None and operation.state in ("done", "failed")
    return settled


def new_order_number(prefix):
    """Human-readable and unique enough to read over the phone: `TR20261125K3F9Q2XA`."""
    return f"{prefix}{utcnow():%Y%m%d}{''.join(secrets.choice('ABCDEFGHJKLMNPQRSTUVWXYZ23456789') for _ in range(8))}"


def available_to_take(account):
    """Free margin on the server less what the CRM has asked to take but not yet settled.

    Called under the account's row lock, so concurrent requests see each other's
    intents; an operation settled on the server but not yet here is counted twice,
    which errs on the safe side.
    """
    from sqlalchemy import func

    state = _gateway_for_account(account).trade_state(account.login)
    in_flight = db.session.scalar(
        select(func.coalesce(func.sum(BalanceOperation.amount), 0)).where(
            BalanceOperation.trading_account_id == account.id,
            BalanceOperation.state.in_(("pending", "unknown")),
            BalanceOperation.amount < 0,
        )
    )
    return min(state.margin_free, state.balance) + in_flight


def _gateway_for_account(account):
    from crm_app.trading.services import gateway_for

    return gateway_for(account.server)


def lock_account(account_id):
    """Serialise money requests on one trading account (row lock until commit)."""
    from crm_app.trading.models import TradingAccount

    return db.session.scalar(
        select(TradingAccount).where(TradingAccount.id == account_id).with_for_update(of=TradingAccount)
    )


def hold_for_debit(account, amount, field):
    """Lock the account and make sure `amount` can leave it now (the caller commits the
    debit's intent, which releases the lock). 422 `insufficient_funds` otherwise."""
    from decimal import Decimal

    from crm_app.common.errors import ValidationFailed
    from crm_app.common.i18n import translate
    from crm_app.trading.services import trading_unavailable

    lock_account(account.id)
    try:
        available = available_to_take(account)
    except gw.TradingError as exc:
        db.session.rollback()
        raise trading_unavailable(exc) from None
    if amount > available:
        db.session.rollback()
        at_most = f"{max(available, Decimal('0')):.2f} {account.currency}"
        raise ValidationFailed(
            code="insufficient_funds",
            message=f"{translate('insufficient_funds')} (≤ {at_most})",
            errors={field: [f"At most {at_most} can leave this account now (free margin)."]},
        )


def run_pending_operations(source_type, source_ids, max_rounds=3):
    """Run what a source's callbacks queued (e.g. the credit after a transfer's debit)."""
    for _ in range(max_rounds):
        pending = db.session.scalars(
            select(BalanceOperation.id).where(
                BalanceOperation.source_type.in_(source_type if isinstance(source_type, tuple) else (source_type,)),
                BalanceOperation.source_id.in_(source_ids),
                BalanceOperation.state == "pending",
            )
        ).all()
        if not pending:
            return
        for operation_id in pending:
            run_operation(operation_id)
