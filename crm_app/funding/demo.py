"""Demo deposit and withdrawal channels: one of each method, loaded idempotently (by name)."""

from decimal import Decimal

from sqlalchemy import select

from crm_app.extensions import db
from crm_app.funding.models import DepositChannel, WithdrawalChannel

# A made-up TRC20 address of the right shape: it belongs to nobody.
DEMO_WALLET = "TMASi45ub7Qe4ZE36UT5G6cU4ud8Fhhe4d"

USD_BANK = {
    "bank_name": "Demo Bank plc",
    "account_name": "Demo Markets Ltd - Client Funds",
    "account_no": "40051234567890",
    "branch": "London City",
}
USD_WIRE = {
    "bank_name": "Demo Bank plc",
    "beneficiary": "Demo Markets Ltd - Client Funds",
    "iban": "GB29NWBK60161331926819",
    "swift_code": "NWBKGB2L",
    "bank_address": "1 Demo Street, London EC2N 1AA, United Kingdom",
}

DEPOSIT_CHANNELS = [
    {
        "method": "bank_transfer",
        "name": "Local bank transfer (USD)",
        "account_info": "Pay into Demo Bank plc, account 40051234567890 (Demo Markets Ltd - Client Funds). "
        "Quote your order number as the payment reference.",
        "allowed_currencies": ["USD"],
        "min_amount": Decimal("50.00"),
        "max_amount": Decimal("50000.00"),
        "pay_type": "bank_account",
        "pay_data": USD_BANK,
    },
    {
        "method": "international_wire_transfer",
        "name": "International wire (USD)",
        "account_info": "SWIFT NWBKGB2L, IBAN GB29NWBK60161331926819, Demo Markets Ltd - Client Funds. "
        "Your bank's charges are yours; ours are shown as the fee.",
        "allowed_currencies": ["USD"],
        "min_amount": Decimal("500.00"),
        "max_amount": Decimal("500000.00"),
        "fee_fixed": Decimal("15.00"),
        "pay_type": "bank_account",
        "pay_data": USD_WIRE,
    },
    {
        "method": "cryptocurrency",
        "name": "USDT (TRC20)",
        "account_info": f"Send USDT on the TRON network (TRC20) only to {DEMO_WALLET}.",
        "allowed_currencies": ["USDT"],
        "min_amount": Decimal("20.00"),
        "max_amount": Decimal("100000.00"),
        "exchange_rate_source": "fixed",
        "exchange_rates": {"USDT": "1.000000"},
        "pay_type": "wallet_address",
        "pay_data": {"network": "TRC20", "currency": "USDT", "wallet_address": DEMO_WALLET},
    },
]

WITHDRAWAL_CHANNELS = [
    {
        "method": "bank_transfer",
        "name": "Local bank transfer (USD)",
        "account_info": "Paid to your own bank account within 1 to 2 business days.",
        "allowed_currencies": ["USD"],
        "min_amount": Decimal("50.00"),
        "max_amount": Decimal("20000.00"),
        "fee_fixed": Decimal("5.00"),
    },
    {
        "method": "international_wire_transfer",
        "name": "International wire (USD)",
        "account_info": "Paid by SWIFT wire within 3 to 5 business days; intermediary banks may charge too.",
        "allowed_currencies": ["USD"],
        "min_amount": Decimal("200.00"),
        "max_amount": Decimal("200000.00"),
        "fee_fixed": Decimal("25.00"),
        "fee_percent": Decimal("0.1"),
    },
    {
        "method": "cryptocurrency",
        "name": "USDT (TRC20)",
        "account_info": "Paid in USDT on the TRON network (TRC20) to your own wallet, usually within the hour.",
        "allowed_currencies": ["USDT"],
        "min_amount": Decimal("20.00"),
        "max_amount": Decimal("50000.00"),
        "fee_percent": Decimal("0.5"),
        "exchange_rate_source": "fixed",
        "exchange_rates": {"USDT": "1.000000"},
    },
]


def seed_funding_demo():
    for model, channels in ((DepositChannel, DEPOSIT_CHANNELS), (WithdrawalChannel, WITHDRAWAL_CHANNELS)):
        existing = set(db.session.scalars(select(model.name)))
        for order, values in enumerate(channels):
            if values["name"] not in existing:
                db.session.add(model(sort_order=order, **values))
    db.session.commit()
