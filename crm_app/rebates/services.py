"""The rebate engine, rule versions and settlement.

Engine (`calculate_rebates`): closing deals (closed_positions rows) past the watermark,
in batches; for each, the trade's owner and its IB chain (closure table, nearest IB =
level 1), the rule version valid at the deal's close time for the account type and the
symbol, and one rebate row per (closing deal, receiving IB), inserted with
`ON CONFLICT DO NOTHING` on the unique (server_id, close_deal_ticket, ib_id). Runs are
serialised by a row lock on the engine's state row; the unique constraint is the real
guard (a run that re-reads rows writes nothing new).

Settlement (`settle_rebates`): per IB, the unpaid rebates are marked with a new settlement
in one UPDATE (concurrent settlements cannot take the same rebate: the second UPDATE
re-checks `settlement_id IS NULL` after the first commits), and the total is paid
through a balance operation (`REB#<key>`) committed in the same transaction.
"""

import logging
from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from fnmatch import fnmatchcase

from sqlalchemy import and_, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from crm_app.admin.services import record_audit_log
from crm_app.auth.models import IbTreePath, User
from crm_app.common.errors import Conflict, NotFound, ValidationFailed
from crm_app.common.timeutil import utcnow
from crm_app.extensions import db
from crm_app.money import services as money
from crm_app.rebates.models import (
    Rebate,
    RebateEngineState,
    RebatePayoutAccount,
    RebateRule,
    RebateSettlement,
)
from crm_app.sync.models import ClosedPosition
from crm_app.trading.models import AccountType, TradingAccount

log = logging.getLogger(__name__)

SOURCE = "rebate_settlement"
CENTS = Decimal("0.01")
BATCH_SIZE = 2000
# Closing deals committed late (a sync transaction that took a lower id but committed after
# a higher one) are met again by re-reading what was synced this recently.
RESCAN_SECONDS = 600
TRIGGER_EVENT = "position_close"


# Rules -----------------------------------------------------------------------------------

RULE_FIELDS = (
    "name",
    "account_type_id",
    "mt_group_pattern",
    "symbol_pattern",
    "mode",
    "level_amounts",
    "upline_difference_only",
    "min_holding_seconds",
    "priority",
    "enabled",
)


def _check_rule_values(values):
    if values.get("account_type_id") is not None and db.session.get(AccountType, values["account_type_id"]) is None:
        raise ValidationFailed(errors={"account_type_id": ["No such account type."]})
    if "level_amounts" in values:
        values["level_amounts"] = [f"{Decimal(amount)}" for amount in values["level_amounts"]]
    return values


def create_rule(values, actor, client):
    values = _check_rule_values(dict(values))
    values.setdefault("valid_from", utcnow())
    rule = RebateRule(**values)
    db.session.add(rule)
    db.session.flush()
    rule.rule_key = rule.id
    record_audit_log(
        "rebate-rules.create",
        actor=actor,
        client=client,
        target_type="rebate-rules",
        target_id=rule.id,
        details={"fields": sorted(values, key=str)},
    )
    db.session.commit()
    return rule


def _current_version_for_update(rule_id):
    rule = db.session.scalar(select(RebateRule).where(RebateRule.id == rule_id).with_for_update(of=RebateRule))
    if rule is None:
        db.session.rollback()
        raise NotFound()
    if rule.valid_to is not None:
        db.session.rollback()
        raise Conflict(
            code="rule_version_closed",
            errors={"_schema": ["This version of the rule is closed; change its current version."]},
        )
    return rule


def update_rule(rule_id, values, actor, client):
    """A change is a new version effective now; the old one is closed at that moment.

    Rebates already calculated keep naming the old version and never change; closing
    deals after now use the new one.
    """
    old = _current_version_for_update(rule_id)
    values = _check_rule_values(dict(values))
    now = max(utcnow(), old.valid_from)
    new = RebateRule(
        rule_key=old.rule_key or old.id,
        **{field: getattr(old, field) for field in RULE_FIELDS},
        valid_from=now,
    )
    for field, value in values.items():
        setattr(new, field, value)
    old.valid_to = now
    db.session.add(new)
    db.session.flush()
    record_audit_log(
        "rebate-rules.update",
        actor=actor,
        client=client,
        target_type="rebate-rules",
        target_id=new.id,
        details={"fields": sorted(values), "previous_version": old.id},
    )
    db.session.commit()
    return new


def retire_rule(rule_id, actor, client):
    """DELETE closes the current version (kept: rebates name it); deals after now get no rule."""
    rule = _current_version_for_update(rule_id)
    rule.valid_to = max(utcnow(), rule.valid_from)
    record_audit_log("rebate-rules.delete", actor=actor, client=client, target_type="rebate-rules", target_id=rule.id)
    db.session.commit()


def list_rules(page, size, current_only=True):
    query = select(RebateRule)
    if current_only:
        query = query.where(RebateRule.valid_to.is_(None))
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    rows = db.session.scalars(query.order_by(RebateRule.id).limit(size).offset((page - 1) * size)).all()
    return rows, total


def get_rule(rule_id):
    rule = db.session.get(RebateRule, rule_id)
    if rule is None:
        raise NotFound()
    return rule


@dataclass
class LoadedRule:
    id: int
    account_type_id: int | None
    mt_group_pattern: str | None
    symbol_pattern: str
    mode: str
    amounts: list
    difference_only: bool
    min_holding_seconds: int
    priority: int
    valid_from: object
    valid_to: object

    def covers(self, moment):
        return self.valid_from <= moment and (self.valid_to is None or moment < self.valid_to)

    def matches(self, account_type_id, mt_group, symbol):
        if self.account_type_id is not None and self.account_type_id != account_type_id:
            return False
        if self.mt_group_pattern and not fnmatchcase((mt_group or "").lower(), self.mt_group_pattern.lower()):
            return False
        return fnmatchcase(symbol.upper(), (self.symbol_pattern or "*").upper())

    def specificity(self):
        pattern = self.symbol_pattern or "*"
        wild = any(ch in pattern for ch in "*?[")
        return (
            self.priority,
            self.account_type_id is not None,
            bool(self.mt_group_pattern),
            not wild,
            len(pattern),
            self.valid_from,
            self.id,
        )


def load_rules():
    rules = [
        LoadedRule(
            id=r.id,
            account_type_id=r.account_type_id,
            mt_group_pattern=r.mt_group_pattern,
            symbol_pattern=r.symbol_pattern,
            mode=r.mode,
            amounts=[Decimal(str(a)) for a in (r.level_amounts or [])],
            difference_only=r.upline_difference_only,
            min_holding_seconds=r.min_holding_seconds or 0,
            priority=r.priority or 0,
            valid_from=r.valid_from,
            valid_to=r.valid_to,
        )
        for r in db.session.scalars(select(RebateRule).where(RebateRule.enabled.is_(True)))
    ]
    rules.sort(key=LoadedRule.specificity, reverse=True)
    return rules


def find_rule(rules, account_type_id, mt_group, symbol, moment):
    """The most specific enabled rule version valid at `moment` (rules come sorted)."""
    for rule in rules:
        if rule.covers(moment) and rule.matches(account_type_id, mt_group, symbol):
            return rule
    return None


# Amounts ---------------------------------------------------------------------------------


def level_gross(rule, level, lots, commission):
    """What the rule gives `level` for this trade before any difference (unrounded)."""
    if level < 1 or level > len(rule.amounts):
        return None
    base = rule.amounts[level - 1]
    if rule.mode == "commission_percent":
        return abs(commission) * base / Decimal(100)
    return base * lots


def compute_amounts(rule, levels, lots, commission):
    """{level: (amount, rate, reason)} for levels 1..n of one trade."""
    answer = {}
    for level in levels:
        gross = level_gross(rule, level, lots, commission)
        if gross is None:
            answer[level] = (Decimal("0.00"), Decimal("0"), "level_not_covered")
            continue
        rate = rule.amounts[level - 1]
        amount = gross
        if rule.difference_only and level > 1:
            below = level_gross(rule, level - 1, lots, commission) or Decimal(0)
            amount = max(Decimal(0), gross - below)
            if amount <= 0:
                answer[level] = (Decimal("0.00"), rate, "no_difference")
                continue
        amount = amount.quantize(CENTS, rounding=ROUND_HALF_UP)
        answer[level] = (amount, rate, None if amount > 0 else "zero_amount")
    return answer


# The engine ------------------------------------------------------------------------------


def _engine_state_for_update():
    db.session.execute(
        pg_insert(RebateEngineState).values(id=1, last_closed_position_id=0, last_counts={}).on_conflict_do_nothing()
    )
    return db.session.scalar(
        select(RebateEngineState)
        .where(RebateEngineState.id == 1)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def _chains(client_ids):
    """{client id: [ib ids, nearest first]} (IB ancestors only), and who is an IB."""
    rows = db.session.execute(
        select(IbTreePath.descendant_id, IbTreePath.ancestor_id, IbTreePath.depth)
        .join(User, User.id == IbTreePath.ancestor_id)
        .where(IbTreePath.descendant_id.in_(client_ids), IbTreePath.depth >= 1, User.user_type == "ib")
        .order_by(IbTreePath.descendant_id, IbTreePath.depth)
    ).all()
    chains = {client_id: [] for client_id in client_ids}
    for descendant_id, ancestor_id, _depth in rows:
        chains[descendant_id].append(ancestor_id)
    ib_ids = set(db.session.scalars(select(User.id).where(User.id.in_(client_ids), User.user_type == "ib")))
    return chains, ib_ids


def rebate_rows(positions, rules, now):
    """The rebate rows (dicts) for a batch of closed positions."""
    account_ids = {p.trading_account_id for p in positions if p.trading_account_id}
    accounts = {
        row.id: row
        for row in db.session.execute(
            select(
                TradingAccount.id,
                TradingAccount.user_id,
                TradingAccount.account_type_id,
                TradingAccount.currency,
                AccountType.mt_group,
            )
            .join(AccountType, AccountType.id == TradingAccount.account_type_id)
            .where(TradingAccount.id.in_(account_ids))
        )
    }
    chains, ib_ids = _chains({a.user_id for a in accounts.values()})
    rows = []
    for position in positions:
        account = accounts.get(position.trading_account_id)
        if account is None:
            continue
        owner = account.user_id
        receivers = [(level, ib_id) for level, ib_id in enumerate(chains.get(owner, []), start=1)]
        if owner in ib_ids:
            receivers.insert(0, (0, owner))
        if not receivers:
            continue
        rule = find_rule(rules, account.account_type_id, account.mt_group, position.symbol, position.close_time)
        base = {
            "server_id": position.server_id,
            "close_deal_ticket": position.close_deal_ticket,
            "closed_position_id": position.id,
            "client_id": owner,
            "trading_account_id": account.id,
            "login": position.login,
            "close_order": position.close_order or 0,
            "position_id": position.position_id or 0,
            "symbol": position.symbol,
            "volume": position.volume,
            "open_price": position.open_price,
            "close_price": position.close_price,
            "open_time": position.open_time,
            "close_time": position.close_time,
            "profit": position.profit,
            "commission": position.commission,
            "currency": account.currency,
            "calculated_at": now,
            "rule_id": rule.id if rule else None,
            "mode": rule.mode if rule else None,
        }
        held_too_short = False
        if rule is not None and rule.min_holding_seconds > 0:
            held = (position.close_time - position.open_time).total_seconds() if position.open_time else None
            held_too_short = held is None or held < rule.min_holding_seconds
        levels = [level for level, _ in receivers if level >= 1]
        amounts = (
            compute_amounts(rule, levels, position.volume, position.commission) if rule and not held_too_short else {}
        )
        chain = chains.get(owner, [])
        for level, ib_id in receivers:
            if level == 0:
                amount, rate, reason = Decimal("0.00"), Decimal("0"), "own_trade"
            elif rule is None:
                amount, rate, reason = Decimal("0.00"), Decimal("0"), "no_rule"
            elif held_too_short:
                amount, rate, reason = Decimal("0.00"), Decimal("0"), "held_too_short"
            else:
                amount, rate, reason = amounts[level]
            rows.append(
                base
                | {
                    "ib_id": ib_id,
                    # The IB below the receiver on the way to the client (none for level 1).
                    "sub_ib_id": chain[level - 2] if level >= 2 else None,
                    "level": level,
                    "rate": rate,
                    "amount": amount,
                    "reason": reason,
                }
            )
    return rows


def _insert(rows):
    if not rows:
        return 0
    # One fixed statement with the rows as parameters: compiled once and cached, sent in
    # batches by the driver (a VALUES list built per batch cost 95% of the engine's time).
    statement = (
        pg_insert(Rebate)
        .on_conflict_do_nothing(index_elements=["server_id", "close_deal_ticket", "ib_id"])
        .returning(Rebate.id)
    )
    return len(db.session.execute(statement, rows).all())


def calculate_rebates(batch_size=BATCH_SIZE, max_batches=None):
    """Rebates for every closing deal not yet processed; safe to run twice or at once.

    Answers {"deals": closing deals read, "rebates": rows written, "amount": total}.
    """
    counts = {"deals": 0, "rebates": 0}
    rules = None
    batches = 0
    # Closing deals synced recently are read again once (late commits; nothing is doubled).
    state = _engine_state_for_update()
    rescan = db.session.scalars(
        select(ClosedPosition)
        .where(
            ClosedPosition.id <= state.last_closed_position_id,
            ClosedPosition.synced_at >= utcnow() - timedelta(seconds=RESCAN_SECONDS),
        )
        .order_by(ClosedPosition.id)
        .limit(batch_size)
    ).all()
    if rescan:
        rules = load_rules()
        counts["rebates"] += _insert(rebate_rows(rescan, rules, utcnow()))
    db.session.commit()
    while max_batches is None or batches < max_batches:
        state = _engine_state_for_update()
        positions = db.session.scalars(
            select(ClosedPosition)
            .where(ClosedPosition.id > state.last_closed_position_id)
            .order_by(ClosedPosition.id)
            .limit(batch_size)
        ).all()
        if not positions:
            state.last_run_at = utcnow()
            state.last_counts = counts
            db.session.commit()
            break
        if rules is None:
            rules = load_rules()
        counts["rebates"] += _insert(rebate_rows(positions, rules, utcnow()))
        counts["deals"] += len(positions)
        state.last_closed_position_id = positions[-1].id
        db.session.commit()
        batches += 1
    return counts


# Settlement ------------------------------------------------------------------------------


def set_payout_account(ib, trading_account_id):
    account = db.session.get(TradingAccount, trading_account_id)
    if account is None or account.user_id != ib.id:
        raise ValidationFailed(errors={"trading_account_id": ["Must be one of the IB's own trading accounts."]})
    choice = db.session.get(RebatePayoutAccount, ib.id)
    if choice is None:
        db.session.add(RebatePayoutAccount(ib_id=ib.id, trading_account_id=account.id))
    else:
        choice.trading_account_id = account.id
    db.session.commit()
    return account


def payout_account(ib_id):
    """The IB's configured payout account, else its first active live account."""
    choice = db.session.get(RebatePayoutAccount, ib_id)
    if choice is not None:
        account = db.session.get(TradingAccount, choice.trading_account_id)
        if account is not None and account.user_id == ib_id and account.status == "active":
            return account
    return db.session.scalar(
        select(TradingAccount)
        .where(
            TradingAccount.user_id == ib_id,
            TradingAccount.status == "active",
            TradingAccount.is_demo.is_(False),
        )
        .order_by(TradingAccount.id)
        .limit(1)
    )


def _unpaid(period_end):
    return and_(
        Rebate.settlement_id.is_(None),
        Rebate.amount > 0,
        Rebate.calculated_at <= period_end,
    )


def settle_ib(ib_id, period_end):
    """One settlement of the IB's unpaid rebates, with its payout intent (committed); or None."""
    account = payout_account(ib_id)
    if account is None:
        log.info("rebates of IB %s wait: no payout account", ib_id)
        return None
    settlement = RebateSettlement(
        order_number=money.new_order_number("RB"),
        ib_id=ib_id,
        trading_account_id=account.id,
        login=account.login,
        currency=account.currency,
        period_end=period_end,
        status="paying",
    )
    db.session.add(settlement)
    db.session.flush()
    taken = db.session.execute(
        update(Rebate)
        .where(Rebate.ib_id == ib_id, _unpaid(period_end))
        .values(settlement_id=settlement.id)
        .returning(Rebate.amount, Rebate.calculated_at)
        .execution_options(synchronize_session=False)
    ).all()
    if not taken:
        db.session.rollback()
        return None
    settlement.total_orders = len(taken)
    settlement.total_amount = sum((amount for amount, _ in taken), Decimal("0.00"))
    settlement.calculate_from = min(at for _, at in taken)
    settlement.calculate_at = max(at for _, at in taken)
    operation = money.open_operation(account, "REB", settlement.total_amount, SOURCE, settlement.id)
    db.session.flush()
    settlement.operation_id = operation.id
    record_audit_log(
        "rebate_settlement.create",
        target_type="rebate_settlement",
        target_id=settlement.id,
        details={"ib_id": ib_id, "amount": str(settlement.total_amount), "orders": len(taken), "login": account.login},
    )
    db.session.commit()
    return settlement.id


def settle_rebates(period_end=None):
    """Settle every IB's unpaid rebates calculated up to `period_end` (default now) and pay them."""
    period_end = period_end or utcnow()
    ib_ids = db.session.scalars(select(Rebate.ib_id).where(_unpaid(period_end)).distinct()).all()
    db.session.commit()
    settlement_ids = []
    for ib_id in ib_ids:
        settlement_id = settle_ib(ib_id, period_end)
        if settlement_id is not None:
            settlement_ids.append(settlement_id)
    if settlement_ids:
        money.run_pending_operations(SOURCE, settlement_ids)
    paid = db.session.scalar(
        select(func.count()).where(RebateSettlement.id.in_(settlement_ids), RebateSettlement.status == "paid")
    )
    return {"settlements": len(settlement_ids), "paid": paid or 0, "settlement_ids": settlement_ids}


def _locked_settlement(settlement_id):
    return db.session.scalar(
        select(RebateSettlement).where(RebateSettlement.id == settlement_id).with_for_update(of=RebateSettlement)
    )


def payout_done(operation):
    settlement = _locked_settlement(operation.source_id)
    settlement.status = "paid"
    settlement.grant_at = utcnow()


def payout_failed(operation):
    """Refused by the server: the rebates are freed for a later settlement (paid once still)."""
    settlement = _locked_settlement(operation.source_id)
    settlement.status = "failed"
    settlement.failure_reason = operation.error
    db.session.execute(
        update(Rebate)
        .where(Rebate.settlement_id == settlement.id)
        .values(settlement_id=None)
        .execution_options(synchronize_session=False)
    )


money.register_operation_callbacks(SOURCE, money.OperationCallbacks(on_done=payout_done, on_failed=payout_failed))


def run(settle=False):
    """What the schedule and `POST /api/v1/admin/rebates/run` do."""
    answer = {"calculated": calculate_rebates()}
    if settle:
        answer["settled"] = settle_rebates()
    return answer
