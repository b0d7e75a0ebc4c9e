"""Withdrawals: out of a trading account at once, paid out after review.

The amount leaves the trading account when the client asks (so it cannot be traded
away while the request waits), under the account's lock and against the live free
margin. Approval only records that the back office paid it; rejection gives the
money back. Both moves are balance operations, so a lost answer or a crash is
settled by the reconciler and the withdrawal's state follows.
"""

import json
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import func, select

from crm_app.admin.services import record_audit_log
from crm_app.auth.models import User
from crm_app.auth.services import consume_email_code
from crm_app.broker.services import email_code_required
from crm_app.common import crypto
from crm_app.common.errors import NotFound, ValidationFailed
from crm_app.common.names import same_person_name
from crm_app.common.timeutil import utcnow
from crm_app.extensions import db
from crm_app.funding import services as funding
from crm_app.money import services as money
from crm_app.money.models import BalanceOperation
from crm_app.review.models import ReviewItem
from crm_app.review.services import ReviewHandler, open_review_item, register_review_handler
from crm_app.trading.models import TradingAccount
from crm_app.trading.services import account_summary, is_live_account, require_live_account
from crm_app.withdrawals.models import Withdrawal

DEBIT, REFUND = "withdrawal", "withdrawal_refund"
SOURCE_TYPES = (DEBIT, REFUND)
# Name of the encryption purpose (a key-derivation label), not a secret.
SECRET_PURPOSE = "withdrawal-payout-details"  # noqa: S105
CENTS = Decimal("0.01")
WITHDRAWAL_DIRECTIONS = ("normal", "withdrawal_only")


# Checks ---------------------------------------------------------------------------------


def _own_account(user, account_id):
    account = db.session.scalar(
        select(TradingAccount).where(TradingAccount.id == account_id, TradingAccount.user_id == user.id)
    )
    if account is None:
        raise NotFound(errors={"trading_account_id": ["No such trading account of yours."]})
    return account


def check_kyc(user):
    """Only a verified person takes money out."""
    from crm_app.kyc.services import kyc_is_approved

    if not kyc_is_approved(user.id):
        raise ValidationFailed(
            code="kyc_required", errors={"kyc_status": ["Your KYC must be approved before you withdraw."]}
        )


def check_account(account):
    require_live_account(account, "trading_account_id")
    if account.account_type.fund_direction not in WITHDRAWAL_DIRECTIONS:
        raise ValidationFailed(
            code="withdrawals_not_allowed",
            errors={"trading_account_id": ["This account type does not allow withdrawals."]},
        )
    if account.status != "active":
        raise ValidationFailed(
            code="withdrawals_not_allowed", errors={"trading_account_id": ["This account is not active."]}
        )


def open_channel(user, account, method, amount, currency, channel_id):
    """The channel, if open to the caller, of this method, for this amount and currency; and its rate."""
    channel = funding.get_open_channel("withdrawal", user.id, channel_id)
    if channel.method != method:
        raise ValidationFailed(
            code="method_mismatch", errors={"method": [f"This channel pays out by {channel.method}."]}
        )
    funding.check_amount_limits(channel, amount, field="withdrawal_amount")
    rate = funding.exchange_rate(channel, currency)
    # Without a rate source the channel converts nothing: it pays the account's own currency.
    if channel.exchange_rate_source != "fixed" and currency != account.currency:
        raise ValidationFailed(
            code="currency_not_allowed",
            errors={"currency": [f"This channel pays out in the account's currency, {account.currency}."]},
        )
    return channel, rate


def quote(channel, amount, rate):
    """Fee, rate and the amount paid out, as the server computes them."""
    fee = funding.compute_fee(channel, amount)
    if amount - fee <= 0:
        raise ValidationFailed(
            code="amount_below_fee", errors={"withdrawal_amount": [f"Must be more than the fee, {fee:.2f}."]}
        )
    remittance = ((amount - fee) * rate).quantize(CENTS, rounding=ROUND_HALF_UP)
    return fee, rate, remittance


def format_rate(rate):
    return format(Decimal(rate).normalize(), "f")


def check_quote(values, fee, rate, remittance):
    """The client's figures must be the server's (compared as numbers): never trusted."""
    expected = {
        "fee": (fee, f"{fee:.2f}"),
        "exchange_rate": (rate, format_rate(rate)),
        "remittance_amount": (remittance, f"{remittance:.2f}"),
    }
    errors = {name: [f"Expected {text}"] for name, (value, text) in expected.items() if values[name] != value}
    if errors:
        raise ValidationFailed(code="quote_mismatch", errors=errors)


def payout_details(user, values, method, currency):
    """The method's info object: as sent, or copied from one of the caller's payout accounts."""
    key = funding.INFO_KEYS[method]
    payment_account_id = values.get("payment_account_id")
    if payment_account_id is not None:
        try:
            saved = funding.get_owned_payment_account(user.id, payment_account_id)
        except NotFound:
            raise NotFound(errors={"payment_account_id": ["No such payout account of yours."]}) from None
        if saved.payment_method != method:
            raise ValidationFailed(
                code="method_mismatch",
                errors={"payment_account_id": [f"This is a {saved.payment_method} account, not {method}."]},
            )
        info = dict(saved.info)
    else:
        info = dict(values[key])
    if method == "cryptocurrency":
        # A wallet has no holder name to compare: only the address identifies the payee.
        if (info.get("currency") or currency).upper() != currency:
            raise ValidationFailed(errors={key: {"currency": [f"Must be {currency}, like `currency`."]}})
        info["currency"] = currency
    elif payment_account_id is not None:
        info["account_holder_name"] = funding.check_payee_name(
            user,
            info.get("account_holder_name"),
            lambda message: {"payment_account_id": [f"This payout account's holder name is not yours. {message}"]},
        )
    else:
        info["account_holder_name"] = funding.check_payee_name(
            user, info.get("account_holder_name"), lambda message: {key: {"account_holder_name": [message]}}
        )
    return info, payment_account_id


# #26 ------------------------------------------------------------------------------------


def create_withdrawal(user, values, client):
    """#26: check everything, then take the money off the trading account now; review follows."""
    account = _own_account(user, values["trading_account_id"])
    check_account(account)
    check_kyc(user)
    method, amount, currency = values["method"], values["withdrawal_amount"], values["currency"].upper()
    channel, rate = open_channel(user, account, method, amount, currency, values["remittance_id"])
    info, payment_account_id = payout_details(user, values, method, currency)
    fee, rate, remittance = quote(channel, amount, rate)
    check_quote(values, fee, rate, remittance)
    if email_code_required("withdrawal"):
        consume_email_code(user.email, "withdrawal", values.get("email_code"))

    money.hold_for_debit(account, amount, "withdrawal_amount")
    withdrawal = Withdrawal(
        order_number=money.new_order_number("WD"),
        user_id=user.id,
        trading_account_id=account.id,
        channel_id=channel.id,
        payment_account_id=payment_account_id,
        method=method,
        amount=amount,
        fee=fee,
        account_currency=account.currency,
        exchange_rate=rate,
        remittance_amount=remittance,
        currency=currency,
        payout_details_encrypted=crypto.encrypt(json.dumps(info, sort_keys=True), SECRET_PURPOSE),
        client_remark=values.get("remark") or "",
        status="processing",
    )
    db.session.add(withdrawal)
    db.session.flush()
    item = open_review_item("withdrawal", user.id, withdrawal.id, object_ref=withdrawal.order_number)
    db.session.flush()
    withdrawal.review_item_id = item.id
    money.open_operation(account, "WDR", -amount, DEBIT, withdrawal.id)
    _log(
        withdrawal,
        "withdrawal.create",
        actor=user,
        client=client,
        login=account.login,
        amount=str(amount),
        fee=str(fee),
        remittance_amount=str(remittance),
        currency=currency,
        method=method,
        channel_id=channel.id,
    )
    db.session.commit()  # the intent, and the lock released
    drive(withdrawal.id)
    db.session.refresh(withdrawal)
    return withdrawal


def drive(withdrawal_id):
    """Run whatever operation of this withdrawal is waiting to be sent."""
    money.run_pending_operations(SOURCE_TYPES, [withdrawal_id])


def _log(withdrawal, action, actor=None, client=None, **details):
    record_audit_log(
        action,
        actor=actor,
        client=client,
        target_type="withdrawal",
        target_id=withdrawal.id,
        details={"order_number": withdrawal.order_number, "status": withdrawal.status, **details},
    )


# What each balance operation's end means for the withdrawal -------------------------------


def _withdrawal(operation):
    return db.session.scalar(
        select(Withdrawal).where(Withdrawal.id == operation.source_id).with_for_update(of=Withdrawal)
    )


def _review_item(withdrawal):
    return db.session.get(ReviewItem, withdrawal.review_item_id) if withdrawal.review_item_id else None


def debit_done(operation):
    withdrawal = _withdrawal(operation)
    withdrawal.status = "auditing"
    _log(withdrawal, "withdrawal.held", ticket=operation.ticket)


def debit_failed(operation):
    withdrawal = _withdrawal(operation)
    withdrawal.status = "failed"
    withdrawal.failure_reason = f"the trading account could not pay: {operation.error}"
    withdrawal.completed_at = utcnow()
    item = _review_item(withdrawal)
    if item is not None and item.status in ("pending", "auditing"):
        item.status, item.remark, item.decided_at = "disapproved", "the trading account could not pay", utcnow()
    _log(withdrawal, "withdrawal.failed", reason=withdrawal.failure_reason)


def refund_done(operation):
    withdrawal = _withdrawal(operation)
    withdrawal.status = "disapproved"
    withdrawal.completed_at = utcnow()
    _log(withdrawal, "withdrawal.refunded", ticket=operation.ticket)


def refund_failed(operation):
    # A credit refused on the merits needs a person: the withdrawal says so and stays visible.
    withdrawal = _withdrawal(operation)
    withdrawal.status = "failed"
    withdrawal.failure_reason = f"REFUND FAILED, needs manual action: {operation.error}"
    _log(withdrawal, "withdrawal.refund_failed", reason=withdrawal.failure_reason)


money.register_operation_callbacks(DEBIT, money.OperationCallbacks(on_done=debit_done, on_failed=debit_failed))
money.register_operation_callbacks(REFUND, money.OperationCallbacks(on_done=refund_done, on_failed=refund_failed))


# Review ---------------------------------------------------------------------------------


def _locked_withdrawal(item):
    withdrawal = db.session.scalar(
        select(Withdrawal).where(Withdrawal.id == item.object_id).with_for_update(of=Withdrawal)
    )
    if withdrawal.status != "auditing":
        raise ValidationFailed(
            code="withdrawal_not_ready",
            errors={"status": [f"The withdrawal is {withdrawal.status}; its debit must settle first."]},
        )
    return withdrawal


def check_payable(withdrawal):
    """What must still hold when the back office pays: a withdrawal queued before these
    rules existed is refused here (and can be rejected, which refunds it)."""
    require_live_account(withdrawal.trading_account, "trading_account_id")
    user = db.session.get(User, withdrawal.user_id)
    check_kyc(user)
    name = payee_name(withdrawal)
    if name is not None:
        funding.check_payee_name(
            user,
            name,
            lambda message: {funding.INFO_KEYS[withdrawal.method]: {"account_holder_name": [message]}},
        )


def approve_withdrawal(item, actor):
    """Paid out by the back office: the money left the trading account at request time."""
    withdrawal = _locked_withdrawal(item)
    check_payable(withdrawal)
    withdrawal.status = "approved"
    withdrawal.completed_at = utcnow()
    _log(withdrawal, "withdrawal.approve", actor=actor)


def reject_withdrawal(item, actor):
    withdrawal = _locked_withdrawal(item)
    withdrawal.status = "processing"
    money.open_operation(withdrawal.trading_account, "REF", withdrawal.amount, REFUND, withdrawal.id)
    _log(withdrawal, "withdrawal.reject", actor=actor)


def mask(secret):
    text = secret or ""
    return "****" + text[-4:] if len(text) > 4 else "****"


def payout_info(withdrawal):
    return json.loads(crypto.decrypt(withdrawal.payout_details_encrypted, SECRET_PURPOSE))


def payee_name(withdrawal):
    """The bank or wire payee's name; None for crypto (a wallet has no holder name)."""
    if withdrawal.method == "cryptocurrency":
        return None
    return payout_info(withdrawal).get("account_holder_name") or ""


def payee_view(withdrawal):
    """The payee name beside the KYC legal name, so a reviewer sees a third party at once."""
    from crm_app.kyc.services import kyc_legal_name

    legal = kyc_legal_name(withdrawal.user_id)
    name = payee_name(withdrawal)
    return {
        "payee_name": name,
        "kyc_legal_name": legal,
        "payee_matches_kyc": None if name is None else same_person_name(name, legal),
    }


def describe_withdrawal(item):
    """The back office's view: account numbers and wallet addresses masked."""
    withdrawal = db.session.get(Withdrawal, item.object_id)
    if withdrawal is None:
        return {}
    info = payout_info(withdrawal)
    secret = funding.SECRET_FIELD[withdrawal.method]
    info[secret] = mask(info.get(secret))
    return {
        "id": withdrawal.id,
        "order_number": withdrawal.order_number,
        "login": withdrawal.trading_account.login,
        "is_demo": not is_live_account(withdrawal.trading_account),
        "trading_account": account_summary(withdrawal.trading_account),
        **payee_view(withdrawal),
        "amount": f"{withdrawal.amount:.2f}",
        "fee": f"{withdrawal.fee:.2f}",
        "account_currency": withdrawal.account_currency,
        "exchange_rate": format_rate(withdrawal.exchange_rate),
        "remittance_amount": f"{withdrawal.remittance_amount:.2f}",
        "currency": withdrawal.currency,
        "method": withdrawal.method,
        "channel": withdrawal.channel.name,
        funding.INFO_KEYS[withdrawal.method]: info,
        "client_remark": withdrawal.client_remark,
        "status": withdrawal.status,
        "failure_reason": withdrawal.failure_reason,
    }


def after_review(item):
    drive(item.object_id)


register_review_handler(
    "withdrawal",
    ReviewHandler(
        approve=approve_withdrawal, reject=reject_withdrawal, describe=describe_withdrawal, after=after_review
    ),
)


# #24 ------------------------------------------------------------------------------------


def owner_view(withdrawal):
    """The method's info object, decrypted for its owner; the other methods' are null."""
    info = payout_info(withdrawal)
    return {key: info if method == withdrawal.method else None for method, key in funding.INFO_KEYS.items()}


def list_own_withdrawals(user, page, size, start_time=None, end_time=None):
    query = select(Withdrawal).where(Withdrawal.user_id == user.id)
    if start_time:
        query = query.where(Withdrawal.created_at >= start_time)
    if end_time:
        query = query.where(Withdrawal.created_at <= end_time)
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    rows = db.session.scalars(
        query.order_by(Withdrawal.created_at.desc(), Withdrawal.id.desc()).limit(size).offset((page - 1) * size)
    ).all()
    for row in rows:
        row.owner_view = owner_view(row)
    return rows, total


def operations_of(withdrawal_id):
    return db.session.scalars(
        select(BalanceOperation)
        .where(BalanceOperation.source_type.in_(SOURCE_TYPES), BalanceOperation.source_id == withdrawal_id)
        .order_by(BalanceOperation.id)
    ).all()
