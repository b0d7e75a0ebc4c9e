"""Clients with real money: approved KYC, live accounts, funded on the trading server."""

from decimal import Decimal

from crm_app.extensions import db
from crm_app.trading.models import TradingAccount
from crm_app.trading.services import gateway_for
from tests.support.trading import add_live_type, open_live


def verified_client(client, factory, first_name="Ann", last_name="Client"):
    """A client whose KYC is approved under this legal name; returns (user, headers)."""
    user = factory.user(first_name=first_name, last_name=last_name)
    factory.approved_kyc(user, first_name=first_name, last_name=last_name)
    return user, factory.headers(client, user)


def live_type(client, book, name="Live Normal", currency="USD"):
    """A live account type that allows money in and out (created once per book)."""
    types = book.setdefault("_live_types", {})
    if (name, currency) not in types:
        types[(name, currency)] = add_live_type(client, book, name=name, currency=currency)
    return types[(name, currency)]


def open_live_account(client, headers, book, currency="USD"):
    """A live account in `currency` on a type that allows deposits and withdrawals."""
    return open_live(client, headers, book, live_type(client, book, f"Live Normal {currency}", currency))


def fund(account_id, amount):
    """Money on the trading server as a deposit outside the CRM would put it there."""
    account = db.session.get(TradingAccount, account_id)
    gateway_for(account.server).balance_operation(account.login, Decimal(amount), f"DEP#seed{account.login}")


def server_balance(account_id):
    account = db.session.get(TradingAccount, account_id)
    return gateway_for(account.server).trade_state(account.login).balance


def add_currencies(client, headers):
    for code, methods in (
        ("USD", ["bank_transfer", "international_wire_transfer", "cryptocurrency"]),
        ("USDT", ["cryptocurrency"]),
    ):
        response = client.post(
            "/api/v1/admin/currencies",
            headers=headers,
            json={"code": code, "name_en": code, "name_zh": code, "methods": methods},
        )
        assert response.status_code == 201, response.get_json()


def add_withdrawal_channel(client, headers, **values):
    body = {
        "method": "bank_transfer",
        "name": "Bank transfer (USD)",
        "allowed_currencies": ["USD"],
        "min_amount": "10.00",
        "max_amount": "5000.00",
        "fee_fixed": "5.00",
        **values,
    }
    response = client.post("/api/v1/admin/withdrawal-channels", headers=headers, json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def withdrawal_body(channel_id, account_id, method="bank_transfer", info=None, amount="100.00", **overrides):
    """A withdrawal with fee 5.00 and no conversion, as a correct client computes it."""
    body = {
        "method": method,
        "remittance_id": channel_id,
        "trading_account_id": account_id,
        "withdrawal_amount": amount,
        "fee": "5.00",
        "exchange_rate": "1",
        "remittance_amount": f"{Decimal(amount) - Decimal('5.00'):.2f}",
        "currency": "USD",
        **overrides,
    }
    if info is not None:
        body[
            {"bank_transfer": "bank_transfer_info", "international_wire_transfer": "international_wire_info"}.get(
                method, "cryptocurrency_info"
            )
        ] = info
    return body
