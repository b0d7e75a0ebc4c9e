"""Demo rebate rules: every demo account type pays two IB levels from the first trades."""

from datetime import datetime

from sqlalchemy import select

from crm_app.extensions import db
from crm_app.rebates.models import RebateRule
from crm_app.trading.models import AccountType

# (symbol pattern, level amounts per lot, priority)
DEMO_RULES = [
    ("XAU*", ["10.00", "3.00"], 10),
    ("*", ["8.00", "2.00"], 0),
]
DEMO_MIN_HOLDING_SECONDS = 60
DEMO_VALID_FROM = datetime(2020, 1, 1)


def seed_rebates_demo():
    """Idempotent: an account type that has rules already is left as it is."""
    covered = set(db.session.scalars(select(RebateRule.account_type_id).where(RebateRule.account_type_id.is_not(None))))
    for account_type in db.session.scalars(select(AccountType).order_by(AccountType.id)):
        if account_type.id in covered:
            continue
        for pattern, amounts, priority in DEMO_RULES:
            rule = RebateRule(
                name=f"{account_type.name} {pattern}",
                account_type_id=account_type.id,
                symbol_pattern=pattern,
                mode="per_lot",
                level_amounts=amounts,
                upline_difference_only=False,
                min_holding_seconds=DEMO_MIN_HOLDING_SECONDS,
                priority=priority,
                enabled=True,
                valid_from=DEMO_VALID_FROM,
            )
            db.session.add(rule)
            db.session.flush()
            rule.rule_key = rule.id
    db.session.commit()
