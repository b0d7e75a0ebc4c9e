from decimal import Decimal

from marshmallow import ValidationError, fields, validate, validates, validates_schema

from crm_app.common.schemas import BrokerTime, Money, PageQuerySchema, Schema, TimeFilter, list_schema
from crm_app.rebates.models import RULE_MODES

NO_NUL = validate.Regexp(r"^[^\x00]*$", error="Must not contain NUL characters.")
MAX_ID = 2**31 - 1
TIME_SEARCH_TYPES = ("calculate_at", "grant_at")

# Which trading-server ticket each number of a rebate row is. A row is linked to its trade in
# the closed orders report (GET /api/v1/reports/history-orders) by `position_number` (its
# `order_number`) or by `order_number` (its `deal_number`); that report's `order_number`
# filter takes either.
HISTORY = "GET /api/v1/reports/history-orders"
MT_ORDER_DOC = (
    "The closing order's ticket on the trading server (the order that made the closing deal; the deal's "
    "ticket when the server names no order). Not a number the closed orders report shows"
)
DEAL_DOC = f"The closing deal's ticket on the trading server: `deal_number` in {HISTORY} (one row per closing deal)"
POSITION_DOC = (
    f"The position's ticket on the trading server: `order_number` in {HISTORY} (a position closed in parts "
    "is several rows there with this number, one per closing deal)"
)


# Rules -----------------------------------------------------------------------------------


class RebateRuleSchema(Schema):
    id = fields.Integer(dump_only=True)
    rule_key = fields.Integer(dump_only=True, metadata={"description": "The same for every version of one rule"})
    name = fields.String(load_default="", validate=validate.And(validate.Length(max=100), NO_NUL))
    account_type_id = fields.Integer(
        allow_none=True,
        validate=validate.Range(min=1, max=MAX_ID),
        metadata={"description": "The account type it covers (none: any, or by `mt_group_pattern`)"},
    )
    mt_group_pattern = fields.String(
        allow_none=True,
        validate=validate.And(validate.Length(max=64), NO_NUL),
        metadata={"description": "MT group pattern (fnmatch: `real\\\\*`), instead of or with the account type"},
    )
    symbol_pattern = fields.String(
        load_default="*",
        validate=validate.And(validate.Length(min=1, max=32), NO_NUL),
        metadata={"description": "Symbol pattern (fnmatch, any case): `EURUSD`, `XAU*`, `*`"},
    )
    mode = fields.String(
        required=True,
        validate=validate.OneOf(RULE_MODES),
        metadata={
            "description": "`per_lot`: amount per lot closed; `commission_percent`: percent of the trade's commission"
        },
    )
    level_amounts = fields.List(
        Money(places=4),
        required=True,
        validate=validate.Length(min=1, max=20),
        metadata={"description": "Per IB level, level 1 (the client's own IB) first"},
    )
    upline_difference_only = fields.Boolean(
        load_default=False,
        metadata={"description": "An upline earns only its amount minus the amount of the level below it"},
    )
    min_holding_seconds = fields.Integer(load_default=0, validate=validate.Range(min=0, max=365 * 86400))
    priority = fields.Integer(
        load_default=0,
        validate=validate.Range(min=-1000, max=1000),
        metadata={
            "description": "Where several rules match a trade, the highest priority wins, then the most specific"
        },
    )
    enabled = fields.Boolean(load_default=True)
    valid_from = BrokerTime(
        metadata={"description": "Start of this version (default now; a change through PUT starts a new one now)"}
    )
    valid_to = BrokerTime(dump_only=True, allow_none=True, metadata={"description": "End of this version (closed)"})
    created_at = BrokerTime(dump_only=True)

    @validates("level_amounts")
    def check_amounts(self, value, **kwargs):
        if any(amount < Decimal(0) for amount in value):
            raise ValidationError("Amounts must not be negative.")

    @validates_schema
    def check_mode(self, data, **kwargs):
        if data.get("mode") == "commission_percent" and any(a > 100 for a in data.get("level_amounts") or []):
            raise ValidationError({"level_amounts": ["A percentage is at most 100."]})


class RebateRuleUpdateSchema(RebateRuleSchema):
    """PUT: fields not sent stay; the change takes effect now as a new version."""

    class Meta:
        exclude = ("valid_from",)

    name = fields.String(validate=validate.And(validate.Length(max=100), NO_NUL))
    symbol_pattern = fields.String(validate=validate.And(validate.Length(min=1, max=32), NO_NUL))
    mode = fields.String(validate=validate.OneOf(RULE_MODES))
    level_amounts = fields.List(Money(places=4), validate=validate.Length(min=1, max=20))
    upline_difference_only = fields.Boolean()
    min_holding_seconds = fields.Integer(validate=validate.Range(min=0, max=365 * 86400))
    priority = fields.Integer(validate=validate.Range(min=-1000, max=1000))
    enabled = fields.Boolean()


class RuleListQuerySchema(PageQuerySchema):
    history = fields.Boolean(
        load_default=False, metadata={"description": "Also list closed versions (default: current versions only)"}
    )


RebateRuleListSchema = list_schema(RebateRuleSchema, "RebateRuleListSchema")


class RunRequestSchema(Schema):
    settle = fields.Boolean(load_default=False, metadata={"description": "Settle and pay unpaid rebates too"})


class RebateRunSchema(Schema):
    id = fields.Integer(metadata={"description": "The run: `GET /api/v1/admin/rebates/runs/{id}` follows it"})
    job_id = fields.String(
        allow_none=True, metadata={"description": "The queued job (none when it ran in the request, without Redis)"}
    )
    status = fields.String(metadata={"description": "`queued`, `running`, `finished` or `failed`"})
    settle = fields.Boolean(metadata={"description": "Settles and pays unpaid rebates after calculating"})
    deals = fields.Integer(metadata={"description": "Closing deals read (when finished)"})
    rebates = fields.Integer(
        metadata={"description": "Rebate rows written, one per closing deal per IB (when finished)"}
    )
    settlements = fields.Integer(metadata={"description": "Settlements made (with settle, when finished)"})
    paid = fields.Integer(
        metadata={"description": "Settlements paid on the trading server (with settle, when finished)"}
    )
    error = fields.String(allow_none=True, metadata={"description": "Why the run failed"})
    requested_by_id = fields.Integer(allow_none=True, metadata={"description": "The admin who asked for it"})
    requested_at = BrokerTime()
    started_at = BrokerTime(allow_none=True)
    finished_at = BrokerTime(allow_none=True)


RebateRunListSchema = list_schema(RebateRunSchema, "RebateRunListSchema")


# Payout account --------------------------------------------------------------------------


class PayoutAccountSchema(Schema):
    trading_account_id = fields.Integer(
        allow_none=True, metadata={"description": "The account settlements pay to (none: rebates wait)"}
    )
    login = fields.Integer(allow_none=True)
    currency = fields.String(allow_none=True)
    server_name = fields.String(allow_none=True)
    account_type_name = fields.String(allow_none=True)
    source = fields.String(
        metadata={
            "description": "`chosen` (by the IB or an admin), `default` (the IB's first active live account: "
            "none chosen, or the chosen one is no longer active) or `none`"
        }
    )
    updated_at = BrokerTime(allow_none=True, metadata={"description": "When the chosen account was set"})


class PayoutAccountChoiceSchema(Schema):
    trading_account_id = fields.Integer(
        required=True,
        validate=validate.Range(min=1, max=MAX_ID),
        metadata={"description": "One of the IB's own live, active trading accounts"},
    )


# Reports ---------------------------------------------------------------------------------


class RebateQuerySchema(PageQuerySchema):
    start_time = TimeFilter(label="Calculated from")
    end_time = TimeFilter(end=True, label="Calculated up to")


class RebateRecordSchema(Schema):
    rebate_id = fields.Integer()
    client_user_id = fields.Integer()
    client_user_name = fields.String(
        metadata={"description": "The client's name (the seed types it as a number; served as a string)"}
    )
    ib_user_id = fields.Integer()
    ib_user_name = fields.String(
        metadata={"description": "The receiving IB's name (the seed types it as a number; served as a string)"}
    )
    open_time = BrokerTime(allow_none=True)
    close_time = BrokerTime()
    payment_time = BrokerTime(allow_none=True, metadata={"description": "When its settlement was paid"})
    settlement_time = BrokerTime(allow_none=True, metadata={"description": "When it was settled"})
    rebate_type = fields.String(metadata={"description": "`per_lot` or `commission_percent` (empty: no rule)"})
    symbol = fields.String()
    trade_profit = Money()
    volume = Money(places=2, metadata={"description": "Lots closed"})
    level = fields.Integer(metadata={"description": "1 = the client's own IB; 0 = the IB's own trade"})
    amount = Money()
    currency = fields.String()
    reason = fields.String(
        metadata={
            "description": "Why the amount is zero: `no_rule`, `held_too_short`, `own_trade`, "
            "`level_not_covered`, `no_difference` (empty when paid)"
        }
    )
    rule_id = fields.Integer(allow_none=True, metadata={"description": "The rule version used"})
    mt_order_number = fields.String(metadata={"description": MT_ORDER_DOC})
    order_number = fields.String(metadata={"description": DEAL_DOC})
    position_number = fields.String(metadata={"description": POSITION_DOC})


RebateListSchema = list_schema(RebateRecordSchema, "IbRebateListSchema")


class CommissionFilterSchema(Schema):
    time_search_type = fields.String(
        load_default="calculate_at",
        validate=validate.OneOf(TIME_SEARCH_TYPES),
        metadata={"description": "Which time the range applies to"},
    )
    start_time = TimeFilter()
    end_time = TimeFilter(end=True)
    client_user_name = fields.String(
        validate=validate.And(validate.Length(max=200), NO_NUL),
        metadata={
            "description": "The client's name or email (partial, any case): settlements that include a rebate "
            "on that client's trades"
        },
    )
    page = fields.Integer(validate=validate.Range(min=1, max=1_000_000))
    size = fields.Integer(validate=validate.Range(min=1, max=200))


class CommissionDetailFilterSchema(CommissionFilterSchema):
    client_user_name = fields.String(
        validate=validate.And(validate.Length(max=200), NO_NUL),
        metadata={"description": "客户用户名: the client's name or email (partial, any case)"},
    )
    rebate_aggregation_id = fields.String(
        validate=validate.Regexp(r"^ *([0-9]{1,9} *)?$", error="A settlement id (digits)."),
        metadata={"description": "The settlement (#59 `id`)"},
    )


class CommissionQuerySchema(CommissionFilterSchema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    size = fields.Integer(load_default=20, validate=validate.Range(min=1, max=200))


class CommissionDetailQuerySchema(CommissionDetailFilterSchema):
    # The seed types it as an integer here (and as a string in #56's body): ASCII digits.
    rebate_aggregation_id = fields.Integer(
        validate=validate.Range(min=0, max=MAX_ID), metadata={"description": "The settlement (#59 `id`)"}
    )
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    size = fields.Integer(load_default=20, validate=validate.Range(min=1, max=200))


class CommissionDetailSchema(Schema):
    id = fields.Integer(metadata={"description": "The rebate's id"})
    amount = Money()
    calculate_at = BrokerTime()
    grant_at = BrokerTime(allow_none=True)
    client_user_name = fields.String()
    ib_user_name = fields.String()
    sub_ib_user_name = fields.String(
        metadata={"description": "The IB below this one through which the client came (empty for its own clients)"}
    )
    open_price = Money(places=5, allow_none=True)
    close_price = Money(places=5, allow_none=True)
    currency = fields.String()
    mt_order_number = fields.String(metadata={"description": MT_ORDER_DOC})
    order_number = fields.String(metadata={"description": DEAL_DOC})
    position_number = fields.String(metadata={"description": POSITION_DOC})
    profit = Money()
    symbol = fields.String()
    trigger_event = fields.String(metadata={"description": "What triggered the rebate: `position_close`"})
    volume = fields.Float(metadata={"description": "Lots closed"})
    level = fields.Integer()
    rebate_aggregation_id = fields.Integer(allow_none=True, metadata={"description": "Its settlement"})


CommissionDetailListSchema = list_schema(CommissionDetailSchema, "IbCommissionDetailListSchema")


class CommissionSchema(Schema):
    id = fields.Integer()
    order_number = fields.String()
    calculate_at = BrokerTime(allow_none=True, metadata={"description": "Latest calculation time of its rebates"})
    grant_at = BrokerTime(allow_none=True, metadata={"description": "When it was paid"})
    currency = fields.String()
    login_id = fields.String(metadata={"description": "The trading account it is paid to"})
    total_amount = Money()
    total_orders = fields.Integer()
    user_email = fields.String()
    user_name = fields.String()
    status = fields.String(metadata={"description": "`paying`, `paid` or `failed`"})


CommissionListSchema = list_schema(CommissionSchema, "IbCommissionListSchema")
