"""Deposits: draft -> receipt -> review -> one credit on the trading account."""

import json
from datetime import timedelta

from flask import current_app
from sqlalchemy import func, select, update

from crm_app.admin.services import record_audit_log
from crm_app.common.errors import Conflict, NotFound, ValidationFailed
from crm_app.common.timeutil import utcnow
from crm_app.deposits.models import Deposit
from crm_app.extensions import db
from crm_app.funding import services as funding
from crm_app.money import services as money
from crm_app.review.services import ReviewHandler, open_review_item, register_review_handler
from crm_app.trading.models import TradingAccount
from crm_app.trading.services import account_summary, is_live_account, require_live_account
from crm_app.uploads.services import find_owned_upload_by_url

SOURCE = "deposit"


def draft_ttl():
    return timedelta(hours=current_app.config.get("DEPOSIT_DRAFT_TTL_HOURS", 24))


def create_draft(user, values, client):
    """#21: what the payer needs, for one of the caller's accounts that takes deposits."""
    account = db.session.scalar(
        select(TradingAccount).where(
            TradingAccount.id == values["trading_account_id"], TradingAccount.user_id == user.id
        )
    )
    if account is None:
        raise NotFound(errors={"trading_account_id": ["No such trading account of yours."]})
    require_live_account(account, "trading_account_id")
    if account.account_type.fund_direction not in ("normal", "deposit_only") or account.status != "active":
        raise ValidationFailed(
            code="deposits_not_allowed", errors={"trading_account_id": ["This account does not take deposits."]}
        )
    channel = funding.get_open_channel("deposit", user.id, values["remittance_id"])
    amount = values["deposit_amount"]
    funding.check_amount_limits(channel, amount, field="deposit_amount")
    if channel.allowed_currencies and account.currency not in channel.allowed_currencies:
        raise ValidationFailed(
            code="currency_not_allowed",
            errors={"remittance_id": [f"This channel does not take {account.currency}."]},
        )
    if amount != amount.quantize(funding.CENTS):
        raise ValidationFailed(errors={"deposit_amount": ["At most 2 decimals."]})
    now = utcnow()
    deposit = Deposit(
        order_number=money.new_order_number("DP"),
        user_id=user.id,
        trading_account_id=account.id,
        channel_id=channel.id,
        amount=amount,
        fee=funding.compute_fee(channel, amount),
        currency=account.currency,
        status="draft",
        client_remark=values.get("remark", ""),
        created_at=now,
        expires_at=now + draft_ttl(),
    )
    db.session.add(deposit)
    db.session.flush()
    record_audit_log(
        "deposit.draft",
        actor=user,
        client=client,
        target_type="deposit",
        target_id=deposit.id,
        details={"amount": str(amount), "login": account.login, "channel_id": channel.id},
    )
    db.session.commit()
    return deposit


def payment_instructions(deposit):
    channel = deposit.channel
    return {
        "order_number": deposit.order_number,
        "pay_type": channel.pay_type,
        # The seed types it as a string: the channel's details as JSON, plus this order's reference.
        "pay_data": json.dumps(
            {
                **(channel.pay_data or {}),
                "reference": deposit.order_number,
                "amount": f"{deposit.amount:.2f}",
                "currency": deposit.currency,
            },
            ensure_ascii=False,
        ),
        "pay_url": channel.pay_url or "",
        "status": deposit.status,
    }


def _own_deposit_for_update(user, order_number):
    deposit = db.session.scalar(
        select(Deposit)
        .where(Deposit.order_number == order_number, Deposit.user_id == user.id)
        .with_for_update(of=Deposit)
    )
    if deposit is None:
        raise NotFound(errors={"order_number": ["No such deposit of yours."]})
    return deposit


def submit_draft(user, order_number, receipt_url, client):
    """#22: the receipt goes with the draft into the review queue."""
    deposit = _own_deposit_for_update(user, order_number)
    if deposit.status == "draft" and deposit.expires_at <= utcnow():
        deposit.status = "expired"
        db.session.commit()
    if deposit.status != "draft":
        db.session.rollback()
        raise Conflict(code="deposit_not_draft", errors={"order_number": [f"This deposit is {deposit.status}."]})
    if not is_live_account(deposit.trading_account):
        # A draft made before demo accounts were refused never reaches the review queue.
        login = deposit.trading_account.login
        db.session.rollback()
        raise ValidationFailed(
            code="demo_account_not_allowed",
            errors={"order_number": [f"Account {login} is a demo account: only live accounts hold real money."]},
        )
    upload = find_owned_upload_by_url(receipt_url, user.id)
    if upload is None:
        db.session.rollback()
        raise ValidationFailed(errors={"receipt_url": ["Must be the URL of a file you uploaded (/api/v1/uploads)."]})
    item = open_review_item("deposit", user.id, deposit.id, object_ref=deposit.order_number)
    db.session.flush()
    deposit.review_item_id = item.id
    deposit.receipt_upload_id = upload.id
    deposit.status = "auditing"
    deposit.submitted_at = utcnow()
    record_audit_log("deposit.submit", actor=user, client=client, target_type="deposit", target_id=deposit.id)
    db.session.commit()
    return deposit


def list_own_deposits(user, page, size, start_time=None, end_time=None):
    query = select(Deposit).where(Deposit.user_id == user.id)
    if start_time:
        query = query.where(Deposit.created_at >= start_time)
    if end_time:
        query = query.where(Deposit.created_at <= end_time)
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    rows = db.session.scalars(
        query.order_by(Deposit.created_at.desc(), Deposit.id.desc()).limit(size).offset((page - 1) * size)
    ).all()
    return rows, total


def expire_stale_drafts():
    """Drafts never submitted before their time are closed (the periodic job)."""
    expired = db.session.execute(
        update(Deposit)
        .where(Deposit.status == "draft", Deposit.expires_at <= utcnow())
        .values(status="expired", completed_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    return expired


# Review and the credit ----------------------------------------------------------------


def _locked(deposit_id):
    return db.session.scalar(select(Deposit).where(Deposit.id == deposit_id).with_for_update(of=Deposit))


def approve_deposit(item, actor):
    deposit = _locked(item.object_id)
    # A deposit queued before the rule existed is refused here; rejecting it is still possible.
    require_live_account(deposit.trading_account, "trading_account_id")
    deposit.status = "processing"
    deposit.remark = "approved"
    money.open_operation(deposit.trading_account, "DEP", deposit.credited_amount, SOURCE, deposit.id)


def reject_deposit(item, actor):
    deposit = _locked(item.object_id)
    deposit.status = "disapproved"
    deposit.completed_at = utcnow()


def after_review(item):
    deposit = db.session.get(Deposit, item.object_id)
    if item.status == "disapproved":
        deposit.remark = item.remark
        db.session.commit()
        return
    if item.remark:
        deposit.remark = item.remark
        db.session.commit()
    money.run_pending_operations(SOURCE, [deposit.id])


def credit_done(operation):
    deposit = _locked(operation.source_id)
    deposit.status = "approved"
    deposit.completed_at = utcnow()


def credit_failed(operation):
    deposit = _locked(operation.source_id)
    deposit.status = "failed"
    deposit.failure_reason = operation.error
    deposit.completed_at = utcnow()


def describe_deposit(item):
    deposit = db.session.get(Deposit, item.object_id)
    if deposit is None:
        return {}
    from crm_app.uploads.models import Upload
    from crm_app.uploads.services import upload_url

    upload = db.session.get(Upload, deposit.receipt_upload_id) if deposit.receipt_upload_id else None
    return {
        "id": deposit.id,
        "order_number": deposit.order_number,
        "amount": f"{deposit.amount:.2f}",
        "fee": f"{deposit.fee:.2f}",
        "credited_amount": f"{deposit.credited_amount:.2f}",
        "currency": deposit.currency,
        "login": deposit.trading_account.login,
        "is_demo": not is_live_account(deposit.trading_account),
        "trading_account": account_summary(deposit.trading_account),
        "channel": deposit.channel.name,
        "status": deposit.status,
        "receipt_url": upload_url(upload) if upload else None,
        "failure_reason": deposit.failure_reason,
    }


money.register_operation_callbacks(SOURCE, money.OperationCallbacks(on_done=credit_done, on_failed=credit_failed))
register_review_handler(
    "deposit",
    ReviewHandler(approve=approve_deposit, reject=reject_deposit, describe=describe_deposit, after=after_review),
)
