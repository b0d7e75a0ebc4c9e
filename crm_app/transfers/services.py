"""Internal transfers: out of one own trading account, into another.

The money leaves the source at once (so it cannot be traded away while a
transfer waits for review), then reaches the target; if the target cannot take
it, or the review rejects it, it goes back to the source. Every step is a
balance operation, so a crash or a lost answer anywhere is settled by the
reconciler and the transfer's state follows.
"""

from decimal import Decimal

from flask import current_app
from sqlalchemy import func, select

from crm_app.admin.services import record_audit_log
from crm_app.auth.services import consume_email_code
from crm_app.broker.services import email_code_required
from crm_app.common.errors import NotFound, ValidationFailed
from crm_app.common.timeutil import utcnow
from crm_app.extensions import db
from crm_app.money import services as money
from crm_app.money.models import BalanceOperation
from crm_app.review.models import ReviewItem
from crm_app.review.services import ReviewHandler, open_review_item, register_review_handler
from crm_app.trading.models import TradingAccount
from crm_app.trading.services import account_summary, is_live_account
from crm_app.transfers.models import Transfer

OUT, IN, REFUND = "transfer_out", "transfer_in", "transfer_refund"
SOURCE_TYPES = (OUT, IN, REFUND)


def auto_approve_limit():
    return Decimal(str(current_app.config.get("TRANSFER_AUTO_APPROVE_MAX", "1000.00")))


def _own_account(user, account_id, field):
    account = db.session.scalar(
        select(TradingAccount).where(TradingAccount.id == account_id, TradingAccount.user_id == user.id)
    )
    if account is None:
        raise NotFound(errors={field: ["No such trading account of yours."]})
    return account


def check_live_pair(source, target):
    """Money moves only between live accounts in one currency: demo balances never
    become real ones. Checked before anything is held or sent."""
    demo = {
        field: [f"Account {account.login} is a demo account: only live accounts hold real money."]
        for field, account in (("source_trading_account_id", source), ("target_trading_account_id", target))
        if not is_live_account(account)
    }
    if demo:
        raise ValidationFailed(code="demo_account_not_allowed", errors=demo)
    if source.currency != target.currency:
        raise ValidationFailed(
            code="currency_mismatch",
            errors={"target_trading_account_id": [f"Must be in {source.currency}, like the source account."]},
        )


def check_transfer(user, source, target, amount):
    check_live_pair(source, target)
    errors = {}
    if source.id == target.id:
        errors["target_trading_account_id"] = ["Must differ from the source account."]
    if source.account_type.fund_direction not in ("normal", "withdrawal_only"):
        errors["source_trading_account_id"] = ["This account type does not allow money out."]
    if target.account_type.fund_direction not in ("normal", "deposit_only"):
        errors["target_trading_account_id"] = ["This account type does not allow money in."]
    if source.status != "active" or target.status != "active":
        errors.setdefault("_schema", []).append("Both accounts must be active.")
    if amount <= 0 or amount != amount.quantize(Decimal("0.01")):
        errors["amount"] = ["A positive amount with at most 2 decimals."]
    if errors:
        raise ValidationFailed(errors=errors)


def create_transfer(user, values, client):
    """#15: take the money off the source now; credit the target now or after review."""
    amount = values["amount"]
    source = _own_account(user, values["source_trading_account_id"], "source_trading_account_id")
    target = _own_account(user, values["target_trading_account_id"], "target_trading_account_id")
    check_transfer(user, source, target, amount)
    if email_code_required("transfer"):
        consume_email_code(user.email, "transfer", values.get("email_code"))

    money.hold_for_debit(source, amount, "amount")
    transfer = Transfer(
        order_number=money.new_order_number("TR"),
        user_id=user.id,
        source_account_id=source.id,
        target_account_id=target.id,
        amount=amount,
        currency=source.currency,
        remark=values.get("remark", ""),
        status="processing",
        needs_review=amount > auto_approve_limit(),
    )
    db.session.add(transfer)
    db.session.flush()
    item = open_review_item("transfer", user.id, transfer.id, object_ref=transfer.order_number)
    db.session.flush()
    transfer.review_item_id = item.id
    if not transfer.needs_review:
        item.status, item.remark, item.decided_at = "approved", "approved automatically (under the limit)", utcnow()
    money.open_operation(source, "TRO", -amount, OUT, transfer.id)
    record_audit_log(
        "transfer.create",
        actor=user,
        client=client,
        target_type="transfer",
        target_id=transfer.id,
        details={
            "amount": str(amount),
            "source": source.login,
            "target": target.login,
            "needs_review": transfer.needs_review,
        },
    )
    db.session.commit()  # the intent, and the lock released
    drive(transfer.id)
    db.session.refresh(transfer)
    db.session.refresh(item)
    return transfer, item


def drive(transfer_id):
    """Run whatever operation of this transfer is waiting to be sent."""
    money.run_pending_operations(SOURCE_TYPES, [transfer_id])


# What each balance operation's end means for the transfer ----------------------------


def _transfer(operation):
    return db.session.scalar(select(Transfer).where(Transfer.id == operation.source_id).with_for_update(of=Transfer))


def _review_item(transfer):
    return db.session.get(ReviewItem, transfer.review_item_id) if transfer.review_item_id else None


def _credit_target(transfer):
    transfer.status = "processing"
    money.open_operation(transfer.target_account, "TRI", transfer.amount, IN, transfer.id)


def _refund_source(transfer, reason):
    transfer.status = "processing"
    transfer.failure_reason = reason
    money.open_operation(transfer.source_account, "REF", transfer.amount, REFUND, transfer.id)


def out_done(operation):
    transfer = _transfer(operation)
    item = _review_item(transfer)
    if transfer.needs_review and item is not None and item.status in ("pending", "auditing"):
        transfer.status = "auditing"
    else:
        _credit_target(transfer)


def out_failed(operation):
    transfer = _transfer(operation)
    transfer.status = "failed"
    transfer.failure_reason = f"the source account could not pay: {operation.error}"
    transfer.completed_at = utcnow()
    item = _review_item(transfer)
    if item is not None and item.status in ("pending", "auditing"):
        item.status, item.remark, item.decided_at = "disapproved", "the source account could not pay", utcnow()


def in_done(operation):
    transfer = _transfer(operation)
    transfer.status = "approved"
    transfer.completed_at = utcnow()


def in_failed(operation):
    transfer = _transfer(operation)
    _refund_source(transfer, f"the target account could not take it: {operation.error}")


def refund_done(operation):
    transfer = _transfer(operation)
    rejected = db.session.scalar(
        select(func.count())
        .select_from(ReviewItem)
        .where(ReviewItem.id == transfer.review_item_id, ReviewItem.status == "disapproved")
    )
    transfer.status = "disapproved" if rejected else "failed"
    transfer.completed_at = utcnow()


def refund_failed(operation):
    # A credit refused on the merits needs a person: the transfer says so and stays visible.
    transfer = _transfer(operation)
    transfer.status = "failed"
    transfer.failure_reason = f"REFUND FAILED, needs manual action: {operation.error}"


money.register_operation_callbacks(OUT, money.OperationCallbacks(on_done=out_done, on_failed=out_failed))
money.register_operation_callbacks(IN, money.OperationCallbacks(on_done=in_done, on_failed=in_failed))
money.register_operation_callbacks(REFUND, money.OperationCallbacks(on_done=refund_done, on_failed=refund_failed))


# Review ---------------------------------------------------------------------------------


def _locked_transfer(item):
    return db.session.scalar(select(Transfer).where(Transfer.id == item.object_id).with_for_update(of=Transfer))


def approve_transfer(item, actor):
    transfer = _locked_transfer(item)
    if transfer.status != "auditing":
        raise ValidationFailed(
            code="transfer_not_ready", errors={"status": [f"The transfer is {transfer.status}; its debit must settle."]}
        )
    # A transfer queued before the rule existed can still never credit demo money to a live account.
    check_live_pair(transfer.source_account, transfer.target_account)
    _credit_target(transfer)


def reject_transfer(item, actor):
    transfer = _locked_transfer(item)
    if transfer.status != "auditing":
        raise ValidationFailed(
            code="transfer_not_ready", errors={"status": [f"The transfer is {transfer.status}; its debit must settle."]}
        )
    _refund_source(transfer, "rejected by review")


def describe_transfer(item):
    transfer = db.session.get(Transfer, item.object_id)
    if transfer is None:
        return {}
    return {
        "id": transfer.id,
        "order_number": transfer.order_number,
        "amount": f"{transfer.amount:.2f}",
        "currency": transfer.currency,
        "source_login": transfer.source_account.login,
        "target_login": transfer.target_account.login,
        "source_trading_account": account_summary(transfer.source_account),
        "target_trading_account": account_summary(transfer.target_account),
        "is_demo": not (is_live_account(transfer.source_account) and is_live_account(transfer.target_account)),
        "status": transfer.status,
        "failure_reason": transfer.failure_reason,
    }


def after_review(item):
    drive(item.object_id)


register_review_handler(
    "transfer",
    ReviewHandler(approve=approve_transfer, reject=reject_transfer, describe=describe_transfer, after=after_review),
)


def list_own_transfers(user, page, size, start_time=None, end_time=None):
    query = select(Transfer).where(Transfer.user_id == user.id)
    if start_time:
        query = query.where(Transfer.created_at >= start_time)
    if end_time:
        query = query.where(Transfer.created_at <= end_time)
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    rows = db.session.scalars(
        query.order_by(Transfer.created_at.desc(), Transfer.id.desc()).limit(size).offset((page - 1) * size)
    ).all()
    return rows, total


def operations_of(transfer_id):
    return db.session.scalars(
        select(BalanceOperation)
        .where(BalanceOperation.source_type.in_(SOURCE_TYPES), BalanceOperation.source_id == transfer_id)
        .order_by(BalanceOperation.id)
    ).all()
