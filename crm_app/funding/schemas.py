import re
from collections.abc import Mapping
from decimal import Decimal

from marshmallow import ValidationError, fields, pre_load, validate, validates_schema

from crm_app.broker.models import FUNDING_METHODS
from crm_app.common.names import has_hidden_characters
from crm_app.common.schemas import BrokerTime, Computed, Money, PageQuerySchema, Schema, TimeFilter
from crm_app.funding import services
from crm_app.funding.models import CRYPTO_NETWORKS, EXCHANGE_RATE_SOURCES, PAY_TYPES

URL = lambda **kw: fields.String(validate=validate.Length(max=1024), **kw)  # noqa: E731
CURRENCY_CODE = validate.Regexp(r"^[A-Za-z0-9]{2,16}$", error="A currency code such as USD.")
METHOD_DOC = "bank_transfer, international_wire_transfer or cryptocurrency"


def decimal_rule(low=None, high=None, places=2, low_inclusive=True):
    """Money fields are validated with plain functions (apispec renders Range on a string
    field as an invalid schema)."""

    def check(value):
        if -value.as_tuple().exponent > places:
            raise ValidationError(f"At most {places} decimal places.")
        if low is not None and (value < low if low_inclusive else value <= low):
            raise ValidationError(f"Must be {'at least' if low_inclusive else 'above'} {low}.")
        if high is not None and value > high:
            raise ValidationError(f"Must be at most {high}.")

    return check


class NormalisedString(fields.String):
    """A string passed through one of the services' normalisers (which raise ValueError)."""

    normaliser = staticmethod(lambda value: value)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            return self.normaliser(text)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None


class CountryCode(NormalisedString):
    normaliser = staticmethod(services.normalise_country)


NETWORK_ERROR = f"Must be one of: {', '.join(CRYPTO_NETWORKS)}."


class CryptoNetwork(NormalisedString):
    """Networks as people write them ("trc20", "TRC-20") read as TRC20; the list is the
    field's enum and is named in its error."""

    normaliser = staticmethod(lambda value: re.sub(r"[\s_-]", "", value).upper())

    def __init__(self, **kwargs):
        kwargs.setdefault("metadata", {}).setdefault("description", f"One of {', '.join(CRYPTO_NETWORKS)}")
        super().__init__(validate=validate.OneOf(CRYPTO_NETWORKS, error=NETWORK_ERROR), **kwargs)


def keep_used_info_only(data, method_field, saved_account_field=None):
    """A pre_load step for the bodies that carry all three info objects (#26, #31): the
    one of the method is used; the others are dropped when blank, and refused, naming
    them and the one used, when something was typed into them. With a saved payout
    account named, a blank object of the method is dropped too."""
    method = data.get(method_field) if isinstance(data, Mapping) else None
    if not isinstance(method, str) or method not in services.INFO_KEYS:
        return data
    used = services.INFO_KEYS[method]
    from_saved = saved_account_field is not None and data.get(saved_account_field) is not None
    errors = services.unused_info_errors(data, method, f"{method_field} is {method}")
    if errors:
        if data.get(used) is None and not from_saved:
            errors[used] = [f"Required with {method_field} {method}."]
        raise ValidationError(errors)
    return {
        key: value
        for key, value in data.items()
        if key not in services.INFO_KEYS.values()
        or (key == used and (services.info_is_filled_in(value) or not from_saved))
    }


class BankNumber(NormalisedString):
    normaliser = staticmethod(services.normalise_bank_no)


class SwiftCode(NormalisedString):
    normaliser = staticmethod(services.normalise_swift)


# Channels: client side ------------------------------------------------------------------


class WithdrawalChannelSchema(Schema):
    account_info = fields.String()
    allowed_currencies = fields.List(fields.String())
    fee = Computed(
        services.render_fee,
        metadata={
            "description": 'Fixed ("5.00"), percent ("0.5%"), or both ("5.00 + 0.5%"): fixed + percent of amount'
        },
    )
    icon_url = fields.String()
    id = fields.Integer()
    max_amount = Money()
    method = fields.String(metadata={"description": METHOD_DOC})
    min_amount = Money()
    name = fields.String()


class DepositChannelSchema(WithdrawalChannelSchema):
    allowed_countries = fields.List(
        fields.String(), metadata={"description": "ISO 3166-1 alpha-2 codes; empty: every country"}
    )


class DepositChannelListSchema(Schema):
    list = fields.List(fields.Nested(DepositChannelSchema))
    total = fields.Integer()


class WithdrawalChannelListSchema(Schema):
    list = fields.List(fields.Nested(WithdrawalChannelSchema))
    total = fields.Integer()


class ChannelQuerySchema(PageQuerySchema):
    currency = fields.String(
        validate=CURRENCY_CODE, metadata={"description": "Only channels that take this currency (not in the seed)"}
    )


# Channels: admin side -------------------------------------------------------------------


class AdminWithdrawalChannelSchema(Schema):
    id = fields.Integer(dump_only=True)
    method = fields.String(required=True, validate=validate.OneOf(FUNDING_METHODS))
    name = fields.String(required=True, validate=validate.Length(min=1, max=64))
    icon_url = URL(load_default="")
    account_info = fields.String(
        load_default="", validate=validate.Length(max=4000), metadata={"description": "Shown to payers"}
    )
    allowed_countries = fields.List(
        CountryCode(), load_default=list, metadata={"description": "ISO 3166-1 alpha-2; empty: every country"}
    )
    allowed_currencies = fields.List(
        fields.String(validate=CURRENCY_CODE), required=True, validate=validate.Length(min=1, max=50)
    )
    min_amount = Money(required=True, validate=decimal_rule(low=Decimal(0)))
    max_amount = Money(required=True, validate=decimal_rule(low=Decimal(0), low_inclusive=False))
    fee_fixed = Money(load_default=Decimal("0"), validate=decimal_rule(low=Decimal(0)))
    fee_percent = Money(
        places=4,
        load_default=Decimal("0"),
        validate=decimal_rule(low=Decimal(0), high=Decimal(100), places=4),
        metadata={"description": "Percent of the amount, 0 to 100"},
    )
    exchange_rate_source = fields.String(load_default="none", validate=validate.OneOf(EXCHANGE_RATE_SOURCES))
    exchange_rates = fields.Dict(
        keys=fields.String(validate=CURRENCY_CODE),
        values=Money(places=6, validate=decimal_rule(low=Decimal(0), low_inclusive=False, places=6)),
        load_default=dict,
        metadata={"description": "With source `fixed`: units of each allowed currency per unit of account currency"},
    )
    enabled = fields.Boolean(load_default=True)
    sort_order = fields.Integer(load_default=0, validate=validate.Range(min=0, max=100000))
    fee = Computed(services.render_fee, dump_only=True)
    created_at = BrokerTime(dump_only=True)
    updated_at = BrokerTime(dump_only=True)


class AdminWithdrawalChannelUpdateSchema(AdminWithdrawalChannelSchema):
    """PUT replaces the fields it names; the others stay."""

    method = fields.String(validate=validate.OneOf(FUNDING_METHODS))
    name = fields.String(validate=validate.Length(min=1, max=64))
    icon_url = URL()
    account_info = fields.String(validate=validate.Length(max=4000))
    allowed_countries = fields.List(CountryCode())
    allowed_currencies = fields.List(fields.String(validate=CURRENCY_CODE), validate=validate.Length(min=1, max=50))
    min_amount = Money(validate=decimal_rule(low=Decimal(0)))
    max_amount = Money(validate=decimal_rule(low=Decimal(0), low_inclusive=False))
    fee_fixed = Money(validate=decimal_rule(low=Decimal(0)))
    fee_percent = Money(places=4, validate=decimal_rule(low=Decimal(0), high=Decimal(100), places=4))
    exchange_rate_source = fields.String(validate=validate.OneOf(EXCHANGE_RATE_SOURCES))
    exchange_rates = fields.Dict(
        keys=fields.String(validate=CURRENCY_CODE),
        values=Money(places=6, validate=decimal_rule(low=Decimal(0), low_inclusive=False, places=6)),
    )
    enabled = fields.Boolean()
    sort_order = fields.Integer(validate=validate.Range(min=0, max=100000))


PAY_DATA = dict(
    keys=fields.String(validate=validate.Length(min=1, max=64)),
    values=fields.String(validate=validate.Length(max=1000)),
    validate=validate.Length(max=30),
    metadata={"description": "What the payer needs (bank details, a wallet address), answered by #21"},
)
PAY_URL = dict(
    validate=[validate.Length(max=1024), validate.Regexp(r"^(https?://.+)?$", error="An http(s) URL.")],
)


class AdminDepositChannelSchema(AdminWithdrawalChannelSchema):
    pay_type = fields.String(load_default="bank_account", validate=validate.OneOf(PAY_TYPES))
    pay_data = fields.Dict(load_default=dict, **PAY_DATA)
    pay_url = fields.String(load_default="", **PAY_URL)


class AdminDepositChannelUpdateSchema(AdminWithdrawalChannelUpdateSchema):
    pay_type = fields.String(validate=validate.OneOf(PAY_TYPES))
    pay_data = fields.Dict(**PAY_DATA)
    pay_url = fields.String(**PAY_URL)


# Payout accounts ---------------------------------------------------------------------------


def text(max_length, required=False, blank=None):
    """A plain text field; required ones (and their update twins, `blank=False`) may not be empty."""
    minimum = 0 if (blank if blank is not None else not required) else 1
    return fields.String(required=required, validate=validate.Length(min=minimum, max=max_length))


COUNTRY_DOC = (
    "ISO 3166-1 alpha-2 (stored and answered in upper case); alpha-2 or alpha-3 in any case and "
    "English names (China, United Kingdom) are read too"
)


class BankTransferInfoSchema(Schema):
    bank_country = CountryCode(required=True, metadata={"description": COUNTRY_DOC})
    bank_name = text(128, required=True)
    bank_no = BankNumber(
        required=True, metadata={"description": "Account number or IBAN: 4 to 34 letters or digits (encrypted)"}
    )
    branch_name = text(128)
    bsc_code = fields.String(
        validate=validate.Regexp(r"^[A-Za-z0-9 -]{0,32}$", error="Up to 32 letters, digits, spaces or dashes."),
        metadata={"description": "Bank/branch sort code, where the country uses one"},
    )


class InternationalWireInfoSchema(Schema):
    bank_country = CountryCode(required=True, metadata={"description": COUNTRY_DOC})
    bank_name = text(128, required=True)
    bank_no = BankNumber(required=True, metadata={"description": "Account number or IBAN (encrypted)"})
    beneficiary_address = text(255, required=True)
    swift_code = SwiftCode(required=True, metadata={"description": "SWIFT/BIC, 8 or 11 characters"})


class CryptocurrencyInfoSchema(Schema):
    network = CryptoNetwork(required=True)
    wallet_address = fields.String(
        required=True,
        validate=validate.Length(min=1, max=128),
        metadata={"description": "Checked against the network's address format (encrypted)"},
    )

    @validates_schema
    def check_address(self, data, **kwargs):
        if "network" in data and "wallet_address" in data:
            reason = services.wallet_address_error(data["network"], data["wallet_address"])
            if reason:
                raise ValidationError(reason, field_name="wallet_address")


PAYEE_DOC = (
    "Not in the seed: the account holder, which must be your KYC legal name (absent or empty: "
    "taken from it; another name is a 422 `payee_name_mismatch` unless the broker allows it)"
)


def refuse_hidden_characters(value):
    if has_hidden_characters(value):
        raise ValidationError("Must not contain control, invisible or text-direction characters.")


def payee_name_field():
    return fields.String(
        allow_none=True,
        validate=[validate.Length(max=200), refuse_hidden_characters],
        metadata={"description": PAYEE_DOC},
    )


class NewBankTransferInfoSchema(BankTransferInfoSchema):
    account_holder_name = payee_name_field()


class NewInternationalWireInfoSchema(InternationalWireInfoSchema):
    account_holder_name = payee_name_field()


class BankTransferInfoUpdateSchema(BankTransferInfoSchema):
    account_holder_name = payee_name_field()
    bank_country = CountryCode(metadata={"description": COUNTRY_DOC})
    bank_name = text(128, blank=False)
    bank_no = BankNumber()


class InternationalWireInfoUpdateSchema(InternationalWireInfoSchema):
    account_holder_name = payee_name_field()
    bank_country = CountryCode(metadata={"description": COUNTRY_DOC})
    bank_name = text(128, blank=False)
    bank_no = BankNumber()
    beneficiary_address = text(255, blank=False)
    swift_code = SwiftCode()


class CryptocurrencyInfoUpdateSchema(CryptocurrencyInfoSchema):
    """The address is checked against the network once merged with the stored values."""

    network = CryptoNetwork()
    wallet_address = fields.String(validate=validate.Length(min=1, max=128))


INFO_DOCS = {
    "bank_transfer_info": "银行转账信息: with payment_method bank_transfer",
    "international_wire_info": "国际电汇信息: with payment_method international_wire_transfer",
    "cryptocurrency_info": "加密货币信息: with payment_method cryptocurrency",
}


class NewPaymentAccountSchema(Schema):
    bank_transfer_info = fields.Nested(
        NewBankTransferInfoSchema, allow_none=True, metadata={"description": INFO_DOCS["bank_transfer_info"]}
    )
    cryptocurrency_info = fields.Nested(
        CryptocurrencyInfoSchema, allow_none=True, metadata={"description": INFO_DOCS["cryptocurrency_info"]}
    )
    international_wire_info = fields.Nested(
        NewInternationalWireInfoSchema,
        allow_none=True,
        metadata={"description": INFO_DOCS["international_wire_info"]},
    )
    payment_method = fields.String(
        required=True, validate=validate.OneOf(FUNDING_METHODS), metadata={"description": METHOD_DOC}
    )
    remark = fields.String(validate=validate.Length(max=255))

    @pre_load
    def keep_used_info_only(self, data, **kwargs):
        return keep_used_info_only(data, "payment_method")

    @validates_schema
    def check_info_matches_method(self, data, **kwargs):
        method = data.get("payment_method")
        if method not in services.INFO_KEYS:
            return
        errors = {}
        for key_method, key in services.INFO_KEYS.items():
            if key_method == method and data.get(key) is None:
                errors[key] = [f"Required with payment_method {method}."]
            elif key_method != method and data.get(key) is not None:
                errors[key] = [f"Must be absent with payment_method {method}."]
        if errors:
            raise ValidationError(errors)


class NewPaymentAccountAnswerSchema(Schema):
    id = fields.Integer()


class InfoUpdate(fields.Nested):
    """An info object of #34. Which one is used depends on the account's method, which only
    the service knows: a failing object is handed on with its errors (`UncheckedInfo`),
    an error there only if it is the account's own method's.

    The seed's form sends every field of every tab ("provide when updating"): an object
    left blank (`""`, `{}`, every field "" or null) changes nothing, and in one partly
    filled in a field left blank is unchanged: the form cannot tell a field its user
    emptied from one it never filled, and an unfilled one must not wipe what is saved.
    (A preselected choice alone is a change on the account's own object, and ignored on
    another method's: see `info_is_filled_in`.)"""

    def _deserialize(self, value, attr, data, **kwargs):
        if services.is_blank_value(value):
            return None
        if isinstance(value, Mapping):
            value = {name: item for name, item in value.items() if not services.is_blank_value(item)}
        try:
            return super()._deserialize(value, attr, data, **kwargs)
        except ValidationError as exc:
            return services.UncheckedInfo(value, exc.messages)


UPDATE_INFO_DOC = (
    "Fields filled in replace; a field sent empty or null is unchanged, and an object left blank "
    "({} or every field empty or null) changes nothing. Only the object of the account's method "
    "is used; the others may be sent empty or null (as a form with a tab per method does)"
)


class PaymentAccountUpdateSchema(Schema):
    bank_transfer_info = InfoUpdate(
        BankTransferInfoUpdateSchema, allow_none=True, metadata={"description": UPDATE_INFO_DOC}
    )
    cryptocurrency_info = InfoUpdate(
        CryptocurrencyInfoUpdateSchema, allow_none=True, metadata={"description": UPDATE_INFO_DOC}
    )
    id = fields.Integer(metadata={"description": "账户ID: optional, must match the path"})
    international_wire_info = InfoUpdate(
        InternationalWireInfoUpdateSchema, allow_none=True, metadata={"description": UPDATE_INFO_DOC}
    )
    is_default = fields.Boolean(
        allow_none=True, metadata={"description": "true: make default; false: no longer default; absent: unchanged"}
    )
    remark = fields.String(allow_none=True, validate=validate.Length(max=255))


class PaymentAccountSchema(Schema):
    """#32: one payout account; the info object of its method, the other two null."""

    account_holder_name = fields.String(metadata={"description": "From the KYC identity"})
    bank_transfer_info = fields.Nested(BankTransferInfoSchema, allow_none=True)
    created_at = BrokerTime()
    cryptocurrency_info = fields.Nested(CryptocurrencyInfoSchema, allow_none=True)
    id = fields.Integer()
    international_wire_info = fields.Nested(InternationalWireInfoSchema, allow_none=True)
    payment_method = fields.String()
    remark = fields.String()
    updated_at = BrokerTime()


class ListedAccountSchema(Schema):
    created_at = BrokerTime()
    id = fields.Integer()
    is_default = fields.Boolean()
    remark = fields.String()


class ListedBankAccountSchema(ListedAccountSchema, BankTransferInfoSchema):
    pass


class ListedCryptoAccountSchema(ListedAccountSchema, CryptocurrencyInfoSchema):
    pass


class ListedWireAccountSchema(ListedAccountSchema, InternationalWireInfoSchema):
    pass


class PaymentAccountListSchema(Schema):
    bank_transfer = fields.List(fields.Nested(ListedBankAccountSchema))
    cryptocurrency = fields.List(fields.Nested(ListedCryptoAccountSchema))
    international_wire_transfer = fields.List(fields.Nested(ListedWireAccountSchema))
    total = fields.Integer()


class PaymentAccountQuerySchema(Schema):
    payment_method = fields.String(validate=validate.OneOf(FUNDING_METHODS), metadata={"description": METHOD_DOC})
    start_time = TimeFilter(label="Created at or after")
    end_time = TimeFilter(end=True, label="Created at or before")
