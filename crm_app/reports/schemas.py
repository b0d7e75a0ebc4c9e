from decimal import ROUND_HALF_UP, Decimal

from marshmallow import fields, validate

from crm_app.common.schemas import BrokerTime, Money, PageQuerySchema, Schema, TimeFilter

# Every status a row can show is a filter value, and the row shows what the owner's own
# list (#16, #23, #24) and the export show for the same object.
ROW_STATUSES = ("processing", "auditing", "approved", "disapproved", "failed")
STATUS_FILTER = ("all", "pending", *ROW_STATUSES)
STATUS_DOC = (
    "The object's status, the same word its owner's list and the export show: processing (the money is "
    "on its way, before or after the review), auditing (waiting for the back office), approved, "
    "disapproved (rejected, any held money returned), failed (the trading server refused the money)."
)
FILTER_DOC = (
    "all; or one status a row shows: auditing, approved, disapproved, processing, failed. "
    "`pending` is accepted as a synonym of `auditing`: the seed writes `auditing` in this filter "
    "and `pending` in the rows (and both in the transfer report) for the same state, waiting for review."
)


def StatusFilter(**kwargs):  # noqa: N802 - a field factory, named like the fields it makes
    return fields.String(validate=validate.OneOf(STATUS_FILTER), metadata={"description": FILTER_DOC}, **kwargs)


class TimeRangeSchema(Schema):
    start_time = TimeFilter()
    end_time = TimeFilter(end=True)


class DepositReportQuerySchema(PageQuerySchema, TimeRangeSchema):
    status = StatusFilter(required=True)


class DepositReportRowSchema(Schema):
    account = fields.String()
    amount = Money()
    auditor_name = fields.String()
    currency = fields.String()
    fee = Money()
    id = fields.Integer()
    method = fields.String()
    order_number = fields.String()
    server_name = fields.String()
    server_type = fields.String()
    status = fields.String(metadata={"description": STATUS_DOC, "enum": list(ROW_STATUSES)})
    submit_time = BrokerTime()
    user_name = fields.String()


class DepositReportSchema(Schema):
    list = fields.List(fields.Nested(DepositReportRowSchema))
    total = fields.Integer()


class WithdrawalReportQuerySchema(PageQuerySchema, TimeRangeSchema):
    status = StatusFilter(required=True)
    method = fields.String(
        required=True,
        validate=validate.OneOf(("all", "bank_transfer", "international_wire_transfer", "cryptocurrency")),
    )


class TransferReportQuerySchema(PageQuerySchema, TimeRangeSchema):
    order_number = fields.String(validate=validate.Length(max=32))
    status = StatusFilter(required=True)


class ReportAccountSchema(Schema):
    account = fields.String()
    id = fields.Integer()
    server_name = fields.String()
    server_type = fields.String()


class TransferReportRowSchema(Schema):
    id = fields.Integer()
    amount = Money()
    currency = fields.String()
    order_number = fields.String()
    source_trading_account = fields.Nested(ReportAccountSchema)
    target_trading_account = fields.Nested(ReportAccountSchema)
    status = fields.String(metadata={"description": STATUS_DOC, "enum": list(ROW_STATUSES)})
    submit_time = BrokerTime()
    user_name = fields.String()


class TransferReportSchema(Schema):
    list = fields.List(fields.Nested(TransferReportRowSchema))
    total = fields.Integer()


class Fixed(Money):
    """A number to `places` decimals, rounded half away from zero as PostgreSQL's round()
    does: the exports format these columns in SQL, and a file must say what the list says."""

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        rounded = Decimal(value).quantize(Decimal(1).scaleb(-self.places), rounding=ROUND_HALF_UP)
        return f"{rounded + 0:.{self.places}f}"  # + 0: no "-0.00"


def Price(**kwargs):  # noqa: N802 - a field factory, named like the fields it makes
    return Fixed(places=5, **kwargs)


# Logins and tickets are numbers on the trading server: ASCII digits only (`²` and `١٠٠`
# are digits to Python, not to PostgreSQL); empty is no filter.
DIGITS = validate.Regexp(r"^ *([0-9]{1,18} *)?$", error="Digits only (0-9).")


class TradingFilterSchema(PageQuerySchema, TimeRangeSchema):
    order_number = fields.String(
        validate=DIGITS,
        metadata={
            "description": "A ticket (digits): the row's `order_number`; in the closed orders report also its "
            "`deal_number` (the closing deal)"
        },
    )
    account = fields.String(validate=DIGITS, metadata={"description": "Trading account (login, digits)"})
    symbol = fields.String(validate=validate.Length(max=32))
    server_id = fields.Integer()
    trading_account_id = fields.Integer()


class HistoryOrderQuerySchema(TradingFilterSchema):
    time_type = fields.String(load_default="open", validate=validate.OneOf(("open", "close")))
    trading_type = fields.String(required=True, validate=validate.OneOf(("all", "BUY", "SELL")))


class PositionQuerySchema(TradingFilterSchema):
    trading_type = fields.String(required=True, validate=validate.OneOf(("all", "BUY", "SELL")))


PENDING_TYPES = ("all", "BUY_LIMIT", "SELL_LIMIT", "BUY_STOP", "SELL_STOP", "BUY_STOP_LIMIT", "SELL_STOP_LIMIT")


class PendingOrderQuerySchema(TradingFilterSchema):
    trading_type = fields.String(required=True, validate=validate.OneOf(PENDING_TYPES))


class TradingRowBase(Schema):
    currency = fields.String()
    order_number = fields.String()
    symbol = fields.String()
    sl = Price()
    tp = Price()
    trading_account = fields.Nested(ReportAccountSchema)
    trading_type = fields.String()
    user_name = fields.String()
    volume = Fixed(metadata={"description": "Lots"})


class HistoryOrderRowSchema(TradingRowBase):
    order_number = fields.String(
        metadata={
            "description": "The position's ticket on the trading server (a position closed in parts is one row "
            "per closing deal, each with this number): `position_number` in the IB's rebates and commission "
            "details (GET /api/v1/ib/rebates, GET /api/v1/ib/commissions/details)"
        }
    )
    deal_number = fields.String(
        metadata={
            "description": "Not in the seed: the closing deal's ticket on the trading server, one per row: "
            "`order_number` in the IB's rebates and commission details. The `order_number` filter takes it too"
        }
    )
    open_price = Price(allow_none=True)
    open_time = BrokerTime(allow_none=True)
    close_price = Price()
    close_time = BrokerTime()
    commission = Money()
    swap = Money()
    profit = Money()


class PositionRowSchema(TradingRowBase):
    leverage = fields.Integer()
    open_price = Price()
    open_time = BrokerTime()
    close_price = Price(metadata={"description": "The current price"})
    commission = Money()
    swap = Money()
    profit = Money(metadata={"description": "Floating profit"})


class PendingOrderRowSchema(TradingRowBase):
    pending_price = Price()
    pending_time = BrokerTime()


class HistoryOrderReportSchema(Schema):
    list = fields.List(fields.Nested(HistoryOrderRowSchema))
    total = fields.Integer()


class PositionReportSchema(Schema):
    list = fields.List(fields.Nested(PositionRowSchema))
    total = fields.Integer()


class PendingOrderReportSchema(Schema):
    list = fields.List(fields.Nested(PendingOrderRowSchema))
    total = fields.Integer()
