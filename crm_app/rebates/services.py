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

from sqlalchemy import and_, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

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
    RebateRun,
    RebateSettlement,
)
from crm_app.sync.models import ClosedPosition
from crm_app.trading.models import AccountType, TradingAccount

log = logging.getLogger(__name__)

SOURCE = "rebate_settlement"
CENTS = Decimal("0.01")
BATCH_SIZE = 2000  # closing deals per batch, row by row in Python (SQLite)
PG_BATCH_SIZE = 50000  # closing deals per batch, in one statement (PostgreSQL)
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
#
# Two ways to the same rows. On PostgreSQL a batch of closing deals is one
# `INSERT ... SELECT ... ON CONFLICT DO NOTHING`: the deals joined to their accounts, the
# owner's IB chain from the closure table, and the rule version valid at the close time,
# amounts and reasons computed by the database (thousands of deals a second). Only the
# symbol/group pattern matching stays in Python (fnmatch semantics, a handful of distinct
# (account type, symbol) pairs per batch), handed to the statement as arrays. Elsewhere
# (SQLite, the demo) the same rows are built in Python, row by row.


def _dialect_name():
    return db.session.get_bind().dialect.name


def _insert(model):
    """INSERT for the bound dialect, with its ON CONFLICT clause."""
    return (pg_insert if _dialect_name() == "postgresql" else sqlite_insert)(model)


def _engine_state_for_update():
    db.session.execute(
        _insert(RebateEngineState).values(id=1, last_closed_position_id=0, last_counts={}).on_conflict_do_nothing()
    )
    return db.session.scalar(
        select(RebateEngineState)
        .where(RebateEngineState.id == 1)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


class RuleIndex:
    """The enabled rule versions (most specific first), and per (account type, symbol) the
    versions whose patterns match it, whatever their validity, in that order."""

    def __init__(self):
        self.rules = load_rules()
        self.mt_groups = dict(db.session.execute(select(AccountType.id, AccountType.mt_group)).all())
        self._matching = {}

    def matching(self, account_type_id, symbol):
        key = (account_type_id, symbol)
        if key not in self._matching:
            mt_group = self.mt_groups.get(account_type_id)
            self._matching[key] = [
                (rank, rule) for rank, rule in enumerate(self.rules) if rule.matches(account_type_id, mt_group, symbol)
            ]
        return self._matching[key]

    def find(self, account_type_id, symbol, moment):
        for _rank, rule in self.matching(account_type_id, symbol):
            if rule.covers(moment):
                return rule
        return None


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


def rebate_rows(positions, rule_index, now):
    """The rebate rows (dicts) for a batch of closed positions (the generic path)."""
    account_ids = {p.trading_account_id for p in positions if p.trading_account_id}
    accounts = {
        row.id: row
        for row in db.session.execute(
            select(
                TradingAccount.id,
                TradingAccount.user_id,
                TradingAccount.account_type_id,
                TradingAccount.currency,
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
        rule = rule_index.find(account.account_type_id, position.symbol, position.close_time)
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


def _insert_rows(rows):
    if not rows:
        return 0
    # One fixed statement with the rows as parameters: compiled once and cached.
    statement = (
        _insert(Rebate)
        .on_conflict_do_nothing(index_elements=["server_id", "close_deal_ticket", "ib_id"])
        .returning(Rebate.id)
    )
    return len(db.session.execute(statement, rows).all())


# The deals of a batch: ids in (after, upto]; a rescan takes only those synced recently
# that have no rebate row yet (every row of a deal is written by one statement).
BATCH_DEALS = "cp.id > :after AND cp.id <= :upto"
RESCAN_DEALS = (
    "cp.id > :after AND cp.id <= :upto AND cp.synced_at >= :since AND NOT EXISTS (SELECT 1 FROM rebates rb"
    " WHERE rb.server_id = cp.server_id AND rb.close_deal_ticket = cp.close_deal_ticket)"
)

PAIRS_SQL = """
SELECT DISTINCT ta.account_type_id, cp.symbol
FROM closed_positions cp JOIN trading_accounts ta ON ta.id = cp.trading_account_id
WHERE {deals}
"""

# Levels: level 0 is the IB's own trade; level n the n-th IB up the closure table (non-IB
# ancestors skipped); the sub-IB of level n >= 2 is the IB of level n - 1. Amounts and
# reasons follow `compute_amounts` exactly (ROUND on non-negative numerics is HALF_UP).
REBATES_SQL = """
WITH deals AS MATERIALIZED (
    SELECT cp.id, cp.server_id, cp.close_deal_ticket, cp.close_order, cp.position_id, cp.login, cp.symbol,
           cp.volume, cp.open_price, cp.close_price, cp.open_time, cp.close_time, cp.profit, cp.commission,
           ta.id AS account_id, ta.user_id AS owner_id, ta.account_type_id, ta.currency
    FROM closed_positions cp
    JOIN trading_accounts ta ON ta.id = cp.trading_account_id
    JOIN trading_account_types tat ON tat.id = ta.account_type_id
    WHERE {deals}
),
candidates (account_type_id, symbol, rule_id, rank, valid_from, valid_to) AS (
    SELECT * FROM unnest(CAST(:types AS integer[]), CAST(:symbols AS text[]),
                         CAST(:rule_ids AS integer[]), CAST(:ranks AS integer[]),
                         CAST(:valid_from AS timestamp[]), CAST(:valid_to AS timestamp[]))
),
chosen AS (
    SELECT DISTINCT ON (d.id) d.id AS deal_id, r.id AS rule_id, r.mode, r.level_amounts,
           r.upline_difference_only AS difference_only, r.min_holding_seconds
    FROM deals d
    JOIN candidates c ON c.account_type_id = d.account_type_id AND c.symbol = d.symbol
    JOIN rebate_rules r ON r.id = c.rule_id
    WHERE c.valid_from <= d.close_time AND (c.valid_to IS NULL OR d.close_time < c.valid_to)
    ORDER BY d.id, c.rank
),
owners AS (SELECT DISTINCT owner_id FROM deals),
receivers AS (
    SELECT p.descendant_id AS owner_id, p.ancestor_id AS ib_id,
           CAST(row_number() OVER chain AS integer) AS level,
           lag(p.ancestor_id) OVER chain AS sub_ib_id
    FROM ib_tree_paths p
    JOIN owners o ON o.owner_id = p.descendant_id
    JOIN users u ON u.id = p.ancestor_id
    WHERE p.depth >= 1 AND u.user_type = 'ib'
    WINDOW chain AS (PARTITION BY p.descendant_id ORDER BY p.depth)
    UNION ALL
    SELECT u.id, u.id, 0, NULL FROM users u JOIN owners o ON o.owner_id = u.id WHERE u.user_type = 'ib'
),
priced AS (
    SELECT d.*, rc.ib_id, rc.level, rc.sub_ib_id, ch.rule_id, ch.mode, ch.difference_only,
           (ch.rule_id IS NOT NULL AND ch.min_holding_seconds > 0
            AND (d.open_time IS NULL
                 OR d.close_time - d.open_time < ch.min_holding_seconds * interval '1 second')) AS held_too_short,
           CASE WHEN rc.level >= 1 THEN CAST(ch.level_amounts ->> (rc.level - 1) AS numeric) END AS rate,
           CASE WHEN rc.level >= 2 THEN CAST(ch.level_amounts ->> (rc.level - 2) AS numeric) END AS rate_below
    FROM deals d
    JOIN receivers rc ON rc.owner_id = d.owner_id
    LEFT JOIN chosen ch ON ch.deal_id = d.id
),
netted AS (
    SELECT p.*,
           CASE WHEN p.difference_only AND p.level > 1 THEN g.gross - coalesce(g.gross_below, 0)
                ELSE g.gross END AS net
    FROM priced p
    CROSS JOIN LATERAL (
        SELECT CASE WHEN p.mode = 'commission_percent' THEN abs(p.commission) * p.rate / 100
                    ELSE p.rate * p.volume END AS gross,
               CASE WHEN p.mode = 'commission_percent' THEN abs(p.commission) * p.rate_below / 100
                    ELSE p.rate_below * p.volume END AS gross_below
    ) g
),
decided AS (
    SELECT n.*,
           CASE WHEN n.level = 0 THEN 'own_trade'
                WHEN n.rule_id IS NULL THEN 'no_rule'
                WHEN n.held_too_short THEN 'held_too_short'
                WHEN n.rate IS NULL THEN 'level_not_covered'
                WHEN n.difference_only AND n.level > 1 AND n.net <= 0 THEN 'no_difference'
                WHEN round(n.net, 2) <= 0 THEN 'zero_amount'
           END AS reason
    FROM netted n
)
INSERT INTO rebates (server_id, close_deal_ticket, ib_id, closed_position_id, client_id, sub_ib_id,
                     trading_account_id, login, close_order, position_id, symbol, volume, open_price,
                     close_price, open_time, close_time, profit, commission, level, rule_id, mode, rate,
                     amount, currency, reason, calculated_at)
SELECT server_id, close_deal_ticket, ib_id, id, owner_id, sub_ib_id,
       account_id, login, coalesce(close_order, 0), coalesce(position_id, 0), symbol, volume, open_price,
       close_price, open_time, close_time, profit, commission, level, rule_id, mode,
       CASE WHEN reason IN ('own_trade', 'no_rule', 'held_too_short', 'level_not_covered') THEN 0 ELSE rate END,
       CASE WHEN reason IS NULL THEN round(net, 2) ELSE 0 END,
       currency, reason, :now
FROM decided
ON CONFLICT (server_id, close_deal_ticket, ib_id) DO NOTHING
"""


def _rebate_range_in_sql(deals, params, rule_index, now):
    pairs = db.session.execute(text(PAIRS_SQL.format(deals=deals)), params).all()
    # The rule versions' validity goes with them: the statement decides with the very
    # versions the batch loaded, as the Python path does.
    candidates = {"types": [], "symbols": [], "rule_ids": [], "ranks": [], "valid_from": [], "valid_to": []}
    for account_type_id, symbol in pairs:
        for rank, rule in rule_index.matching(account_type_id, symbol):
            for name, value in zip(
                candidates, (account_type_id, symbol, rule.id, rank, rule.valid_from, rule.valid_to), strict=True
            ):
                candidates[name].append(value)
    result = db.session.execute(text(REBATES_SQL.format(deals=deals)), {**params, **candidates, "now": now})
    return result.rowcount


def _rebate_range_in_python(after, upto, since, rule_index, now):
    query = select(ClosedPosition).where(ClosedPosition.id > after, ClosedPosition.id <= upto)
    if since is not None:
        query = query.where(ClosedPosition.synced_at >= since)
    positions = db.session.scalars(query.order_by(ClosedPosition.id)).all()
    return _insert_rows(rebate_rows(positions, rule_index, now))


def rebate_range(after, upto, rule_index, since=None, in_sql=None):
    """Write the rebate rows of the closing deals with ids in (after, upto] (only those synced
    since `since` when given); answers the rows written."""
    if in_sql is None:
        in_sql = _dialect_name() == "postgresql"
    now = utcnow()
    if not in_sql:
        return _rebate_range_in_python(after, upto, since, rule_index, now)
    if since is None:
        return _rebate_range_in_sql(BATCH_DEALS, {"after": after, "upto": upto}, rule_index, now)
    return _rebate_range_in_sql(RESCAN_DEALS, {"after": after, "upto": upto, "since": since}, rule_index, now)


def _next_range(after, batch_size, upto=None, since=None):
    """(last id, count) of the next `batch_size` closing deals after `after`; (None, 0) if none."""
    ids = select(ClosedPosition.id).where(ClosedPosition.id > after)
    if upto is not None:
        ids = ids.where(ClosedPosition.id <= upto)
    if since is not None:
        ids = ids.where(ClosedPosition.synced_at >= since)
    ids = ids.order_by(ClosedPosition.id).limit(batch_size).subquery()
    last, count = db.session.execute(select(func.max(ids.c.id), func.count())).one()
    return last, count


def default_batch_size():
    return PG_BATCH_SIZE if _dialect_name() == "postgresql" else BATCH_SIZE


def calculate_rebates(batch_size=None, max_batches=None, in_sql=None):
    """Rebates for every closing deal not yet processed; safe to run twice or at once.

    Answers {"deals": closing deals read, "rebates": rows written}. Runs are serialised by
    the engine state's row lock, held while a batch is written; the unique
    (server_id, close_deal_ticket, ib_id) is the real guard. Each batch loads the rule
    versions after its deals were read, so a deal closed after a rule change (hence synced
    after it) is met with the new version.
    """
    batch_size = batch_size or default_batch_size()
    counts = {"deals": 0, "rebates": 0}
    # Closing deals synced recently at or below the watermark are read again (a sync that
    # took a lower id but committed after a higher one was read); nothing is doubled.
    since = utcnow() - timedelta(seconds=RESCAN_SECONDS)
    after = 0
    while True:
        state = _engine_state_for_update()
        last, _count = _next_range(after, batch_size, upto=state.last_closed_position_id, since=since)
        if last is None:
            db.session.commit()
            break
        counts["rebates"] += rebate_range(after, last, RuleIndex(), since=since, in_sql=in_sql)
        db.session.commit()
        after = last
    batches = 0
    while max_batches is None or batches < max_batches:
        state = _engine_state_for_update()
        after = state.last_closed_position_id
        last, count = _next_range(after, batch_size)
        if last is None:
            state.last_run_at = utcnow()
            state.last_counts = counts
            db.session.commit()
            break
        counts["rebates"] += rebate_range(after, last, RuleIndex(), in_sql=in_sql)
        counts["deals"] += count
        state.last_closed_position_id = last
        db.session.commit()
        batches += 1
    return counts


# Payout account ----------------------------------------------------------------------------


def _ib_or_404(ib_id):
    user = db.session.get(User, ib_id)
    if user is None or user.user_type != "ib":
        raise NotFound()
    return user


def payout_account(ib_id):
    """The IB's chosen payout account while it is live and active, else its first active
    live account; None when it has none (its rebates wait)."""
    choice = db.session.get(RebatePayoutAccount, ib_id)
    if choice is not None:
        account = db.session.get(TradingAccount, choice.trading_account_id)
        if account is not None and account.user_id == ib_id and account.status == "active" and not account.is_demo:
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


def payout_account_view(ib_id):
    """What settlement will pay the IB's rebates to, and whether the IB chose it."""
    _ib_or_404(ib_id)
    choice = db.session.get(RebatePayoutAccount, ib_id)
    account = payout_account(ib_id)
    db.session.commit()
    chosen = account is not None and choice is not None and choice.trading_account_id == account.id
    return {
        "trading_account_id": account.id if account else None,
        "login": account.login if account else None,
        "currency": account.currency if account else None,
        "server_name": account.server.name if account else None,
        "account_type_name": account.account_type.name if account else None,
        "source": "chosen" if chosen else ("default" if account else "none"),
        "updated_at": choice.updated_at if chosen else None,
    }


def set_payout_account(ib, trading_account_id, actor=None, client=None):
    """Choose the IB's payout account: one of its own live, active trading accounts.

    Another user's account (or none) is 404, as if it did not exist; a demo or inactive
    account of the IB's is 422. The change applies to settlements made from now on and is
    audit-logged (who: the IB itself, or the admin acting for it).
    """
    account = db.session.get(TradingAccount, trading_account_id, with_for_update={"of": TradingAccount})
    if account is None or account.user_id != ib.id:
        db.session.rollback()
        raise NotFound()
    if account.is_demo or account.status != "active":
        db.session.rollback()
        raise ValidationFailed(
            code="payout_account_not_eligible",
            errors={"trading_account_id": ["Rebates are paid to a live, active trading account only."]},
        )
    choice = db.session.get(RebatePayoutAccount, ib.id, with_for_update=True)
    previous = choice.trading_account_id if choice else None
    if choice is None:
        db.session.add(RebatePayoutAccount(ib_id=ib.id, trading_account_id=account.id, updated_at=utcnow()))
    else:
        choice.trading_account_id = account.id
        choice.updated_at = utcnow()
    record_audit_log(
        "rebate_payout_account.update",
        actor=actor,
        client=client,
        target_type="users",
        target_id=ib.id,
        details={"trading_account_id": account.id, "login": account.login, "previous_trading_account_id": previous},
    )
    db.session.commit()
    return account


def choose_payout_account(ib_id, trading_account_id, actor, client):
    """PUT of the IB (for itself) or of an admin (for the IB `ib_id`)."""
    ib = _ib_or_404(ib_id)
    set_payout_account(ib, trading_account_id, actor=actor, client=client)
    return payout_account_view(ib_id)


# Settlement ------------------------------------------------------------------------------


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
    """What the schedule and an on-demand run do: calculate, and settle with `settle`."""
    answer = {"calculated": calculate_rebates()}
    if settle:
        answer["settled"] = settle_rebates()
    return answer


# On-demand runs ----------------------------------------------------------------------------
#
# `POST /admin/rebates/run` records a run and queues its job; the job (workers/rebates.py)
# calls `execute_run`, which keeps the run's state in its row. Without Redis the job runs
# in the request (workers.enqueue), and the answer is the finished run.

RUN_JOB_ID = "rebate-run-{}"
LIVE_JOB_STATUSES = ("queued", "started", "scheduled", "deferred")


def request_run(settle, actor, client):
    """`POST /admin/rebates/run`: record the run (audit-logged), queue its job, answer the run."""
    from crm_app.common.runtime import runtime
    from workers import enqueue
    from workers.rebates import run_rebates

    queued = runtime().redis is not None
    record = RebateRun(
        settle=settle,
        status="queued",
        requested_by_id=actor.id if actor is not None else None,
        requested_at=utcnow(),
    )
    db.session.add(record)
    db.session.flush()
    if queued:
        record.job_id = RUN_JOB_ID.format(record.id)
    record_audit_log(
        "rebates.run",
        actor=actor,
        client=client,
        target_type="rebate_runs",
        target_id=record.id,
        details={"settle": settle},
    )
    db.session.commit()
    run_id = record.id
    try:
        enqueue(run_rebates, run_id, job_id=record.job_id, description=f"run_rebates({run_id})")
    except Exception as exc:
        log.exception("rebate run %s could not be queued", run_id)
        _finish_run(run_id, "failed", error=f"could not be queued: {type(exc).__name__}")
    return get_run(run_id)


def _finish_run(run_id, status, counts=None, error=None):
    db.session.rollback()
    record = db.session.get(RebateRun, run_id, with_for_update=True, populate_existing=True)
    record.status = status
    record.finished_at = utcnow()
    record.error = error
    for name, value in (counts or {}).items():
        setattr(record, name, value)
    db.session.commit()


def execute_run(run_id):
    """The run's job: calculate (and settle), recording status and counts in the run's row.

    A second delivery of the job finds the run started already and does nothing.
    """
    record = db.session.get(RebateRun, run_id, with_for_update=True)
    if record is None or record.status != "queued":
        db.session.commit()
        return None
    record.status = "running"
    record.started_at = utcnow()
    settle = record.settle
    db.session.commit()
    try:
        answer = run(settle=settle)
    except Exception as exc:
        _finish_run(run_id, "failed", error=f"{type(exc).__name__}: {exc}"[:2000])
        raise
    settled = answer.get("settled") or {}
    counts = {
        "deals": answer["calculated"]["deals"],
        "rebates": answer["calculated"]["rebates"],
        "settlements": settled.get("settlements", 0),
        "paid": settled.get("paid", 0),
    }
    _finish_run(run_id, "finished", counts=counts)
    return counts


def _job_status(job_id):
    from rq.exceptions import NoSuchJobError
    from rq.job import Job

    from crm_app.common.runtime import runtime

    redis = runtime().redis
    if redis is None:
        return None
    try:
        status = Job.fetch(job_id, connection=redis).get_status()
    except NoSuchJobError:
        return "gone"
    return getattr(status, "value", status)


def get_run(run_id):
    """One run; a run whose job ended without finishing it (worker killed, timeout) is failed."""
    record = db.session.get(RebateRun, run_id)
    if record is None:
        raise NotFound()
    if record.status in ("queued", "running") and record.job_id:
        status = _job_status(record.job_id)
        # A job not yet in Redis may be one being queued this very moment.
        just_requested = record.requested_at > utcnow() - timedelta(seconds=60)
        if status not in (None, "finished", *LIVE_JOB_STATUSES) and not (status == "gone" and just_requested):
            _finish_run(run_id, "failed", error=f"the job ended without finishing the run ({status})")
            record = db.session.get(RebateRun, run_id)
    db.session.commit()
    return record


def list_runs(page, size):
    total = db.session.scalar(select(func.count()).select_from(RebateRun))
    rows = db.session.scalars(
        select(RebateRun).order_by(RebateRun.id.desc()).limit(size).offset((page - 1) * size)
    ).all()
    db.session.commit()
    return rows, total
