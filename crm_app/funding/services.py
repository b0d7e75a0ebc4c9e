"""Funding configuration: which channels a client may pay in or out through, what they
cost, and the client's payout accounts.

For the deposit and withdrawal flows:
  get_open_channel(kind, user_id, channel_id, field="remittance_id") -> DepositChannel | WithdrawalChannel
  check_amount_limits(channel, amount, field="amount") -> None  (ValidationFailed outside min..max)
  compute_fee(channel, amount) -> Decimal                       (fixed + percent, half-up to cents)
  exchange_rate(channel, currency, field="currency") -> Decimal
  get_owned_payment_account(user_id, account_id) -> PayoutDetails (decrypted; NotFound otherwise)
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from crm_app.admin.services import record_audit_log
from crm_app.auth.models import User
from crm_app.broker.models import Currency
from crm_app.broker.services import payee_must_match_kyc
from crm_app.common import crypto
from crm_app.common.errors import Conflict, NotFound, ValidationFailed
from crm_app.common.names import same_person_name
from crm_app.extensions import db
from crm_app.funding.models import DepositChannel, PaymentAccount, WithdrawalChannel
from crm_app.kyc.countries import ISO_3166_ALPHA2
from crm_app.kyc.country_names import country_code

# Name of the encryption purpose (a key-derivation label), not a secret.
SECRET_PURPOSE = "payout-account-number"  # noqa: S105
CENTS = Decimal("0.01")
CHANNEL_MODELS = {"deposit": DepositChannel, "withdrawal": WithdrawalChannel}


# Fees, limits, rates ------------------------------------------------------------------


def format_percent(percent):
    """0.5000 -> "0.5", 1.0000 -> "1" (never "1E+2")."""
    return format(Decimal(percent).normalize(), "f")


def render_fee(channel):
    """#20/#25's `fee`: "5.00" (fixed), "0.5%" (percent), "5.00 + 0.5%" (both), "0.00" (free)."""
    parts = []
    if channel.fee_fixed:
        parts.append(f"{Decimal(channel.fee_fixed):.2f}")
    if channel.fee_percent:
        parts.append(f"{format_percent(channel.fee_percent)}%")
    return " + ".join(parts) or "0.00"


def compute_fee(channel, amount):
    """The channel's fee on `amount` (account currency): fixed + amount x percent / 100,
    rounded half-up to cents."""
    fee = Decimal(channel.fee_fixed or 0) + Decimal(amount) * Decimal(channel.fee_percent or 0) / 100
    return fee.quantize(CENTS, rounding=ROUND_HALF_UP)


def check_amount_limits(channel, amount, field="amount"):
    """422 naming `field` unless min_amount <= amount <= max_amount (and amount > 0)."""
    amount = Decimal(amount)
    low, high = Decimal(channel.min_amount), Decimal(channel.max_amount)
    if amount <= 0 or amount < low or amount > high:
        raise ValidationFailed(
            code="amount_out_of_range",
            errors={field: [f"Must be between {low:.2f} and {high:.2f}."]},
        )


def exchange_rate(channel, currency, field="currency"):
    """Units of `currency` one unit of the account currency is worth on this channel.

    Source `none`: 1 (no conversion). Source `fixed`: the admin's rate for that currency.
    A currency the channel does not take is a 422 naming `field`.
    """
    if channel.allowed_currencies and currency not in channel.allowed_currencies:
        raise ValidationFailed(
            code="currency_not_allowed",
            errors={field: [f"This channel takes {', '.join(channel.allowed_currencies)}."]},
        )
    if channel.exchange_rate_source != "fixed":
        return Decimal("1")
    rate = (channel.exchange_rates or {}).get(currency)
    if rate is None:
        raise ValidationFailed(code="currency_not_allowed", errors={field: ["No exchange rate for this currency."]})
    return Decimal(rate)


# Channels: client side ----------------------------------------------------------------


def channel_open_to(channel, country):
    """A channel with allowed countries excludes callers of other or unknown countries."""
    return channel.enabled and (not channel.allowed_countries or country in channel.allowed_countries)


def open_channels(kind, user_id, currency=None):
    from crm_app.kyc.services import kyc_country

    model = CHANNEL_MODELS[kind]
    country = kyc_country(user_id)
    channels = db.session.scalars(
        select(model).where(model.enabled.is_(True)).order_by(model.sort_order, model.id)
    ).all()
    # A handful of rows: filtering the JSON lists here is portable across databases.
    return [
        channel
        for channel in channels
        if channel_open_to(channel, country) and (currency is None or currency in (channel.allowed_currencies or []))
    ]


def list_open_channels(kind, user_id, page, size, currency=None):
    """#20 (`deposit`) and #25 (`withdrawal`): enabled channels open to the caller's KYC country."""
    channels = open_channels(kind, user_id, currency)
    return channels[(page - 1) * size : page * size], len(channels)


def get_open_channel(kind, user_id, channel_id, field="remittance_id"):
    """The channel a deposit or withdrawal names, if it is enabled and open to the user; 422 otherwise."""
    from crm_app.kyc.services import kyc_country

    channel = db.session.get(CHANNEL_MODELS[kind], channel_id) if isinstance(channel_id, int) else None
    if channel is None or not channel_open_to(channel, kyc_country(user_id)):
        raise ValidationFailed(code="channel_not_open", errors={field: [f"No such {kind} channel open to you."]})
    return channel


# Channels: admin side -----------------------------------------------------------------


def prepare_channel(values, channel):
    """`register_admin_crud`'s hook: the rules a schema cannot check alone (the stored
    row's other values, currencies in the database)."""
    values = dict(values)
    errors = {}

    def merged(name):
        if name in values:
            return values[name]
        return getattr(channel, name, None) if channel is not None else None

    if "allowed_countries" in values:
        values["allowed_countries"] = sorted(set(values["allowed_countries"]))
    if "allowed_currencies" in values:
        codes = list(dict.fromkeys(code.upper() for code in values["allowed_currencies"]))
        known = set(db.session.scalars(select(Currency.code).where(Currency.code.in_(codes)))) if codes else set()
        unknown = [code for code in codes if code not in known]
        if unknown:
            errors["allowed_currencies"] = [f"Unknown currency: {', '.join(unknown)}."]
        values["allowed_currencies"] = codes

    low, high = merged("min_amount"), merged("max_amount")
    if low is not None and high is not None and Decimal(low) > Decimal(high):
        errors["max_amount"] = ["Must not be below min_amount."]

    if "exchange_rates" in values:
        values["exchange_rates"] = {code.upper(): format(rate, "f") for code, rate in values["exchange_rates"].items()}
    if (merged("exchange_rate_source") or "none") == "fixed":
        rates, currencies = merged("exchange_rates") or {}, merged("allowed_currencies") or []
        missing = [code for code in currencies if code not in rates]
        extra = [code for code in rates if code not in currencies]
        if missing:
            errors["exchange_rates"] = [f"A rate is needed for {', '.join(missing)}."]
        elif extra:
            errors["exchange_rates"] = [f"Not an allowed currency: {', '.join(extra)}."]
    elif values.get("exchange_rates"):
        errors["exchange_rates"] = ["Only with exchange_rate_source `fixed`."]
    elif "exchange_rate_source" in values:
        values["exchange_rates"] = {}

    if isinstance(channel, DepositChannel) or (channel is None and "pay_type" in values):
        if merged("pay_type") == "redirect" and not merged("pay_url"):
            errors["pay_url"] = ["Required when pay_type is `redirect`."]
    if errors:
        raise ValidationFailed(errors=errors)
    return values


# Payout accounts -------------------------------------------------------------------------

INFO_KEYS = {
    "bank_transfer": "bank_transfer_info",
    "international_wire_transfer": "international_wire_info",
    "cryptocurrency": "cryptocurrency_info",
}
# Choices a form fills in before anyone types (a network, a country, a currency): alone
# they do not make an info object "filled in".
PRESET_FIELDS = frozenset({"network", "currency", "bank_country"})


def is_blank_value(value):
    return value is None or (isinstance(value, str) and not value.strip())


def info_is_filled_in(value):
    """Whether an info object holds something a person typed.

    The seed's bodies send all three info objects, as a form with a tab per method does:
    the tabs nobody used arrive as null, "", {} or an object of empty strings, perhaps with
    a preselected network or country. Anything else (any other value) was typed.
    """
    if is_blank_value(value) or value == {}:
        return False
    if not isinstance(value, Mapping):
        return True
    return any(not is_blank_value(item) for name, item in value.items() if name not in PRESET_FIELDS)


def unused_info_errors(values, method, why):
    """Errors naming each info object of another method than `method` that was filled in,
    and saying which one is used (`why`: "method is bank_transfer"); empty when the others
    are blank."""
    used = INFO_KEYS[method]
    return {
        key: [f"Must be empty or null: {why}, so {used} is the one used."]
        for key_method, key in INFO_KEYS.items()
        if key_method != method and info_is_filled_in(values.get(key))
    }


# The plain columns of each method's info object; the secret one is encrypted apart.
PLAIN_FIELDS = {
    "bank_transfer": ("bank_country", "bank_name", "branch_name", "bsc_code"),
    "international_wire_transfer": ("bank_country", "bank_name", "beneficiary_address", "swift_code"),
    "cryptocurrency": ("network",),
}
SECRET_FIELD = {
    "bank_transfer": "bank_no",
    "international_wire_transfer": "bank_no",
    "cryptocurrency": "wallet_address",
}

BANK_NO_PATTERN = re.compile(r"^[A-Z0-9]{4,34}$")
SWIFT_PATTERN = re.compile(r"^[A-Z]{4}([A-Z]{2})[A-Z0-9]{2}([A-Z0-9]{3})?$")
BASE58 = "1-9A-HJ-NP-Za-km-z"
WALLET_PATTERNS = {
    "TRC20": (re.compile(rf"^T[{BASE58}]{{33}}$"), "T followed by 33 base58 characters."),
    "ERC20": (re.compile(r"^0x[0-9a-fA-F]{40}$"), "0x followed by 40 hexadecimal digits."),
    "BEP20": (re.compile(r"^0x[0-9a-fA-F]{40}$"), "0x followed by 40 hexadecimal digits."),
    "BTC": (
        re.compile(rf"^(bc1[02-9ac-hj-np-z]{{11,71}}|BC1[02-9AC-HJ-NP-Z]{{11,71}}|[13][{BASE58}]{{25,34}})$"),
        "A bech32 (bc1...) or base58 (1... or 3...) Bitcoin address.",
    ),
}
# SWIFT uses XK for Kosovo, which ISO 3166-1 has not assigned.
SWIFT_COUNTRIES = ISO_3166_ALPHA2 | {"XK"}


def normalise_bank_no(value):
    """Spaces and dashes dropped, upper case: account numbers and IBANs as banks print them."""
    text = re.sub(r"[\s-]", "", value).upper()
    if not BANK_NO_PATTERN.match(text):
        raise ValueError("4 to 34 letters or digits (an account number or an IBAN).")
    return text


def normalise_swift(value):
    text = value.strip().upper()
    match = SWIFT_PATTERN.match(text)
    if not match or match.group(1) not in SWIFT_COUNTRIES:
        raise ValueError("A SWIFT/BIC code: 8 or 11 letters and digits (bank, country, location, branch).")
    return text


def normalise_country(value):
    """A country as people write it ("cn", "CHN", "China", "United Kingdom") -> its ISO
    3166-1 alpha-2 code in upper case, as stored."""
    code = country_code(value)
    if code is None:
        raise ValueError("Not a country: an ISO 3166-1 code (such as GB or GBR) or an English name (United Kingdom).")
    return code


def wallet_address_error(network, address):
    """None if `address` looks like an address on `network`, else the reason."""
    pattern, rule = WALLET_PATTERNS.get(network, (None, "Unknown network."))
    if pattern is None or not pattern.match(address):
        return f"Not a {network} address: {rule}"
    return None


@dataclass(frozen=True)
class PayoutDetails:
    """A payout account with its secrets decrypted, for the withdrawal flow only.

    `info` has the seed's withdrawal shape (`bank_transfer_info` and
    `international_wire_info` carry `account_holder_name`).
    """

    id: int
    user_id: int
    payment_method: str
    is_default: bool
    account_holder_name: str
    remark: str
    info: dict = field(default_factory=dict)

    @property
    def info_key(self):
        return INFO_KEYS[self.payment_method]


def holder_name(user):
    """The name on the KYC identity, else the user's own name."""
    from crm_app.kyc.services import kyc_legal_name

    return (kyc_legal_name(user.id) or user.full_name or "")[:200]


def check_payee_name(user, name, errors_at):
    """A bank or wire payee must be the client: the KYC legal name (else the user's own
    name), as `same_person_name` compares them, unless the broker switched the rule off.

    Returns the payee name to record: `name` as written, or the legal name when `name`
    is empty. `errors_at(message)` builds the error dict naming the caller's field.
    """
    legal = holder_name(user)
    written = (name or "").strip()
    if not written:
        return legal
    if payee_must_match_kyc():
        if not legal:
            raise ValidationFailed(
                code="kyc_required",
                errors=errors_at("The payee must be the name on your identity verification (KYC): complete it first."),
            )
        if not same_person_name(written, legal):
            raise ValidationFailed(
                code="payee_name_mismatch",
                errors=errors_at(f"Must be the account owner's own name, as on the verified identity: {legal}."),
            )
    return written[:200]


def account_info(account):
    """The decrypted info object of a payout account (#32's `*_info` shape)."""
    method = account.payment_method
    info = {name: getattr(account, name) for name in PLAIN_FIELDS[method]}
    secret = account.wallet_address_encrypted if method == "cryptocurrency" else account.bank_no_encrypted
    info[SECRET_FIELD[method]] = crypto.decrypt(secret, SECRET_PURPOSE)
    return info


def apply_info(account, info):
    """Write an info object's fields onto the row: plain ones as they are, the secret encrypted."""
    method = account.payment_method
    for name in PLAIN_FIELDS[method]:
        if name in info:
            setattr(account, name, info[name] or "")
    secret = SECRET_FIELD[method]
    if secret in info:
        encrypted = crypto.encrypt(info[secret], SECRET_PURPOSE)
        if method == "cryptocurrency":
            account.wallet_address_encrypted = encrypted
        else:
            account.bank_no_encrypted = encrypted


def check_wallet(method, info):
    if method != "cryptocurrency":
        return
    reason = wallet_address_error(info.get("network"), info.get("wallet_address") or "")
    if reason:
        raise ValidationFailed(errors={"cryptocurrency_info": {"wallet_address": [reason]}})


def saved_holder_name(user, method, written, key):
    """The holder name a payout account keeps: for bank and wire, the client's own name
    (checked like a withdrawal's payee); a crypto wallet keeps the client's name as a label."""
    if method == "cryptocurrency":
        return holder_name(user)
    return check_payee_name(user, written, lambda message: {key: {"account_holder_name": [message]}})


def lock_user(user_id):
    """Payout-account changes of one user run one at a time (the default rule needs it).

    FOR NO KEY UPDATE on PostgreSQL: rows elsewhere that reference the user are not held up.
    """
    db.session.execute(select(User.id).where(User.id == user_id).with_for_update(key_share=True))


def has_default(user_id, method):
    return (
        db.session.scalar(
            select(PaymentAccount.id).where(
                PaymentAccount.user_id == user_id,
                PaymentAccount.payment_method == method,
                PaymentAccount.is_default.is_(True),
            )
        )
        is not None
    )


def flush_or_conflict():
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise Conflict(
            code="default_payment_account_conflict",
            errors={"is_default": ["Another change to your payout accounts ran at the same time; try again."]},
        ) from None


def create_payment_account(user, values, client=None):
    """#31: the first account of a method becomes its default."""
    method = values["payment_method"]
    key = INFO_KEYS[method]
    info = dict(values[key])
    check_wallet(method, info)
    # Checked here too, so a client learns at once that a payout account pays only them.
    holder = saved_holder_name(user, method, info.pop("account_holder_name", None), key)
    lock_user(user.id)
    account = PaymentAccount(
        user_id=user.id,
        payment_method=method,
        is_default=not has_default(user.id, method),
        account_holder_name=holder,
        remark=values.get("remark") or "",
    )
    apply_info(account, info)
    db.session.add(account)
    flush_or_conflict()
    record_audit_log(
        "payment_account.create",
        actor=user,
        client=client,
        target_type="payment_account",
        target_id=account.id,
        details={"payment_method": method, "is_default": account.is_default},
    )
    db.session.commit()
    return account


def owned_account(user_id, account_id, lock=False):
    query = select(PaymentAccount).where(PaymentAccount.id == account_id, PaymentAccount.user_id == user_id)
    if lock:
        query = query.with_for_update()
    account = db.session.scalar(query)
    if account is None:
        raise NotFound()
    return account


@dataclass(frozen=True)
class UncheckedInfo:
    """An info object of an update that failed its schema: an error only if it is the
    account's own method's (see `update_payment_account`)."""

    value: object
    errors: dict


def unchecked_value(value):
    return value.value if isinstance(value, UncheckedInfo) else value


def update_payment_account(user, account_id, values, client=None):
    """#34: partial update; `is_default` true moves the default here, false clears it."""
    values = dict(values)
    body_id = values.pop("id", None)
    if body_id is not None and body_id != account_id:
        raise ValidationFailed(code="id_mismatch", errors={"id": ["Must match the id in the path."]})
    lock_user(user.id)
    account = owned_account(user.id, account_id, lock=True)
    method = account.payment_method
    own_key = INFO_KEYS[method]
    # Only now is the method known: another method's object is ignored unless filled in,
    # and only this method's object must be valid.
    others = {key: unchecked_value(values.get(key)) for key in INFO_KEYS.values() if key != own_key}
    wrong = unused_info_errors(others, method, f"this is a {method} account")
    if wrong:
        raise ValidationFailed(errors=wrong)
    if isinstance(values.get(own_key), UncheckedInfo):
        raise ValidationFailed(errors={own_key: values[own_key].errors})

    changed = []
    info = dict(values.get(own_key) or {})
    written_holder = info.pop("account_holder_name", None)
    if (written_holder or "").strip():
        account.account_holder_name = saved_holder_name(user, method, written_holder, own_key)
        changed.append(f"{own_key}.account_holder_name")
    elif payee_must_match_kyc() and not same_person_name(account.account_holder_name, holder_name(user)):
        # Saved under an older name (before KYC, say): it follows the legal name now.
        account.account_holder_name = holder_name(user)
    if info:
        check_wallet(method, {**account_info(account), **info})
        apply_info(account, info)
        changed += [f"{own_key}.{name}" for name in sorted(info)]
    if values.get("remark") is not None:
        account.remark = values["remark"]
        changed.append("remark")
    if values.get("is_default") is True and not account.is_default:
        db.session.execute(
            update(PaymentAccount)
            .where(
                PaymentAccount.user_id == user.id,
                PaymentAccount.payment_method == method,
                PaymentAccount.id != account.id,
                PaymentAccount.is_default.is_(True),
            )
            .values(is_default=False)
            .execution_options(synchronize_session="fetch")
        )
        account.is_default = True
        changed.append("is_default")
    elif values.get("is_default") is False and account.is_default:
        account.is_default = False
        changed.append("is_default")
    flush_or_conflict()
    record_audit_log(
        "payment_account.update",
        actor=user,
        client=client,
        target_type="payment_account",
        target_id=account.id,
        details={"payment_method": method, "fields": changed, "is_default": account.is_default},
    )
    db.session.commit()
    return account


def payment_account_view(account):
    """#32: the account with its own method's info object; the other two are null."""
    view = {
        "id": account.id,
        "payment_method": account.payment_method,
        "account_holder_name": account.account_holder_name,
        "remark": account.remark,
        "created_at": account.created_at,
        "updated_at": account.updated_at,
    }
    for method, key in INFO_KEYS.items():
        view[key] = account_info(account) if method == account.payment_method else None
    return view


def get_payment_account(user_id, account_id):
    return payment_account_view(owned_account(user_id, account_id))


def list_payment_accounts(user_id, payment_method=None, start_time: datetime | None = None, end_time=None):
    """#33: the caller's payout accounts grouped by method, the default first."""
    query = select(PaymentAccount).where(PaymentAccount.user_id == user_id)
    if payment_method:
        query = query.where(PaymentAccount.payment_method == payment_method)
    if start_time is not None:
        query = query.where(PaymentAccount.created_at >= start_time)
    if end_time is not None:
        query = query.where(PaymentAccount.created_at <= end_time)
    accounts = db.session.scalars(
        query.order_by(PaymentAccount.is_default.desc(), PaymentAccount.created_at.desc(), PaymentAccount.id.desc())
    ).all()
    grouped = {method: [] for method in ("bank_transfer", "cryptocurrency", "international_wire_transfer")}
    for account in accounts:
        grouped[account.payment_method].append(
            {
                "id": account.id,
                "is_default": account.is_default,
                "remark": account.remark,
                "created_at": account.created_at,
                **account_info(account),
            }
        )
    return {**grouped, "total": len(accounts)}


def get_owned_payment_account(user_id, account_id):
    """For the withdrawal flow: the user's payout account, decrypted; NotFound if not theirs."""
    account = owned_account(user_id, account_id)
    info = account_info(account)
    if account.payment_method != "cryptocurrency":
        info = {"account_holder_name": account.account_holder_name, **info}
    return PayoutDetails(
        id=account.id,
        user_id=account.user_id,
        payment_method=account.payment_method,
        is_default=account.is_default,
        account_holder_name=account.account_holder_name,
        remark=account.remark,
        info=info,
    )
