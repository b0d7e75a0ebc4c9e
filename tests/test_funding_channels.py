"""Deposit and withdrawal channels: admin CRUD with its rules, the client lists (#20, #25)
filtered by KYC country, fee rendering and the fee/limit/rate services."""

from decimal import Decimal

import pytest

RESOURCES = ("deposit-channels", "withdrawal-channels")


@pytest.fixture
def admin_headers(client, factory):
    headers = factory.headers(client, factory.admin())
    for code, methods in (
        ("USD", ["bank_transfer", "international_wire_transfer", "cryptocurrency"]),
        ("EUR", ["bank_transfer", "international_wire_transfer"]),
        ("USDT", ["cryptocurrency"]),
    ):
        response = client.post(
            "/api/v1/admin/currencies",
            headers=headers,
            json={"code": code, "name_en": code, "name_zh": code, "methods": methods},
        )
        assert response.status_code == 201, response.get_json()
    return headers


def channel_body(**overrides):
    return {
        "method": "bank_transfer",
        "name": "Bank transfer (USD)",
        "icon_url": "https://cdn.example.test/bank.png",
        "account_info": "Demo Bank, account 123456789",
        "allowed_currencies": ["USD"],
        "min_amount": "50.00",
        "max_amount": "50000.00",
        **overrides,
    }


def create_channel(client, headers, resource, **overrides):
    response = client.post(f"/api/v1/admin/{resource}", headers=headers, json=channel_body(**overrides))
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def set_kyc_country(user, country, full_name=""):
    from crm_app.extensions import db
    from crm_app.kyc.models import KycProfile

    db.session.add(KycProfile(user_id=user.id, data={"identity": {"country": country, "full_name": full_name}}))
    db.session.commit()


# Admin CRUD --------------------------------------------------------------------------------


@pytest.mark.parametrize("resource", RESOURCES)
def test_admin_creates_reads_changes_and_deletes_a_channel_with_an_audit_trail(client, admin_headers, resource):
    created = create_channel(
        client, admin_headers, resource, fee_fixed="5", fee_percent="0.5", allowed_countries=["gb", "DE", "GB"]
    )
    assert created["min_amount"] == "50.00" and created["max_amount"] == "50000.00"
    assert created["fee_fixed"] == "5.00" and created["fee_percent"] == "0.5000"
    assert created["fee"] == "5.00 + 0.5%"
    assert created["allowed_countries"] == ["DE", "GB"]
    assert created["enabled"] is True and created["exchange_rate_source"] == "none"
    if resource == "deposit-channels":
        assert created["pay_type"] == "bank_account" and created["pay_data"] == {} and created["pay_url"] == ""
    else:
        assert "pay_type" not in created

    url = f"/api/v1/admin/{resource}/{created['id']}"
    assert client.get(url, headers=admin_headers).get_json()["name"] == "Bank transfer (USD)"
    changed = client.put(url, headers=admin_headers, json={"name": "Local bank", "enabled": False})
    assert changed.status_code == 200, changed.get_json()
    assert changed.get_json()["name"] == "Local bank" and changed.get_json()["enabled"] is False
    listing = client.get(f"/api/v1/admin/{resource}", headers=admin_headers).get_json()
    assert listing["total"] == 1 and listing["list"][0]["id"] == created["id"]
    assert client.delete(url, headers=admin_headers).status_code == 204
    assert client.get(url, headers=admin_headers).status_code == 404

    logs = client.get(f"/api/v1/admin/audit-logs?target_type={resource}", headers=admin_headers).get_json()
    assert sorted(row["action"] for row in logs["list"]) == [
        f"{resource}.create",
        f"{resource}.delete",
        f"{resource}.update",
    ]


def test_deposit_channel_keeps_what_the_payer_needs(client, admin_headers):
    created = create_channel(
        client,
        admin_headers,
        "deposit-channels",
        method="cryptocurrency",
        allowed_currencies=["usdt"],
        pay_type="redirect",
        pay_url="https://pay.example.test/checkout",
        pay_data={"network": "TRC20", "wallet_address": "TMASi45ub7Qe4ZE36UT5G6cU4ud8Fhhe4d"},
        exchange_rate_source="fixed",
        exchange_rates={"usdt": "1.0005"},
    )
    assert created["allowed_currencies"] == ["USDT"]
    assert created["exchange_rates"] == {"USDT": "1.000500"}
    assert created["pay_data"]["network"] == "TRC20" and created["pay_url"].startswith("https://")


BAD_CHANNEL_FIELDS = [
    ("method", "cash"),
    ("name", ""),
    ("min_amount", "abc"),
    ("min_amount", "-1"),
    ("min_amount", 12.5),
    ("max_amount", "0"),
    ("max_amount", "10.00"),  # below min_amount
    ("fee_fixed", "1.001"),
    ("fee_fixed", "-5"),
    ("fee_percent", "100.5"),
    ("fee_percent", "-0.1"),
    ("fee_percent", "0.12345"),
    ("allowed_countries", ["XX"]),
    ("allowed_countries", ["ZZZ"]),
    ("allowed_currencies", ["ZZZ"]),
    ("allowed_currencies", []),
    ("exchange_rate_source", "live"),
    ("exchange_rates", {"USD": "0"}),
    ("sort_order", -1),
    ("enabled", "maybe"),
    ("unknown_field", 1),
]


@pytest.mark.parametrize("resource", RESOURCES)
@pytest.mark.parametrize(("field", "value"), BAD_CHANNEL_FIELDS)
def test_bad_channel_field_is_422_naming_it(client, admin_headers, resource, field, value):
    response = client.post(f"/api/v1/admin/{resource}", headers=admin_headers, json=channel_body(**{field: value}))
    assert response.status_code == 422, response.get_json()
    assert field in response.get_json()["errors"]
    assert client.get(f"/api/v1/admin/{resource}", headers=admin_headers).get_json()["total"] == 0


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"exchange_rate_source": "fixed"}, "exchange_rates"),  # no rate for USD
        ({"exchange_rate_source": "fixed", "exchange_rates": {"USD": "1", "EUR": "0.9"}}, "exchange_rates"),
        ({"exchange_rates": {"USD": "1.1"}}, "exchange_rates"),  # source stays `none`
        ({"pay_type": "redirect"}, "pay_url"),
        ({"pay_url": "ftp://example.test"}, "pay_url"),
        ({"pay_type": "cash"}, "pay_type"),
    ],
)
def test_deposit_channel_rules_across_fields(client, admin_headers, changes, field):
    response = client.post("/api/v1/admin/deposit-channels", headers=admin_headers, json=channel_body(**changes))
    assert response.status_code == 422, response.get_json()
    assert field in response.get_json()["errors"]


def test_update_is_checked_against_the_stored_values(client, admin_headers):
    created = create_channel(client, admin_headers, "withdrawal-channels")
    url = f"/api/v1/admin/withdrawal-channels/{created['id']}"
    above_max = client.put(url, headers=admin_headers, json={"min_amount": "60000"})
    assert above_max.status_code == 422 and "max_amount" in above_max.get_json()["errors"]
    fixed_without_rates = client.put(url, headers=admin_headers, json={"exchange_rate_source": "fixed"})
    assert fixed_without_rates.status_code == 422
    fixed = client.put(
        url, headers=admin_headers, json={"exchange_rate_source": "fixed", "exchange_rates": {"USD": "1"}}
    )
    assert fixed.status_code == 200 and fixed.get_json()["exchange_rates"] == {"USD": "1.000000"}
    # A currency added to a fixed-rate channel needs its rate too.
    no_eur_rate = client.put(url, headers=admin_headers, json={"allowed_currencies": ["USD", "EUR"]})
    assert no_eur_rate.status_code == 422 and "exchange_rates" in no_eur_rate.get_json()["errors"]
    back_to_none = client.put(url, headers=admin_headers, json={"exchange_rate_source": "none"})
    assert back_to_none.get_json()["exchange_rates"] == {}
    assert client.get(url, headers=admin_headers).get_json()["min_amount"] == "50.00"


# Client lists ---------------------------------------------------------------------------------

DEPOSIT_FIELDS = {
    "account_info",
    "allowed_countries",
    "allowed_currencies",
    "fee",
    "icon_url",
    "id",
    "max_amount",
    "method",
    "min_amount",
    "name",
}
WITHDRAWAL_FIELDS = DEPOSIT_FIELDS - {"allowed_countries"}


def test_client_lists_have_the_seed_fields_and_money_as_strings(client, factory, admin_headers):
    create_channel(client, admin_headers, "deposit-channels", fee_fixed="5")
    create_channel(client, admin_headers, "withdrawal-channels", fee_percent="0.5")
    headers = factory.headers(client, factory.user())

    deposits = client.get("/api/v1/client/deposit-channels?page=1&size=20", headers=headers).get_json()
    assert deposits["total"] == 1
    assert set(deposits["list"][0]) == DEPOSIT_FIELDS
    row = deposits["list"][0]
    assert (row["min_amount"], row["max_amount"], row["fee"]) == ("50.00", "50000.00", "5.00")
    assert row["allowed_countries"] == [] and row["allowed_currencies"] == ["USD"]

    withdrawals = client.get("/api/v1/client/withdrawal-channels", headers=headers).get_json()
    assert withdrawals["total"] == 1
    assert set(withdrawals["list"][0]) == WITHDRAWAL_FIELDS
    assert withdrawals["list"][0]["fee"] == "0.5%"


@pytest.mark.parametrize("resource", RESOURCES)
def test_channels_are_filtered_by_the_callers_kyc_country(client, factory, admin_headers, resource):
    create_channel(client, admin_headers, resource, name="Everyone")
    create_channel(client, admin_headers, resource, name="UK only", allowed_countries=["GB"])
    create_channel(client, admin_headers, resource, name="China and Germany", allowed_countries=["CN", "DE"])
    create_channel(client, admin_headers, resource, name="Switched off", enabled=False)

    def names(user):
        answer = client.get(f"/api/v1/client/{resource}", headers=factory.headers(client, user)).get_json()
        return sorted(row["name"] for row in answer["list"])

    british, german, unknown = factory.user(), factory.user(), factory.user()
    set_kyc_country(british, "GB")
    set_kyc_country(german, "DE")
    assert names(british) == ["Everyone", "UK only"]
    assert names(german) == ["China and Germany", "Everyone"]
    # No KYC country yet: only channels open to every country.
    assert names(unknown) == ["Everyone"]


def test_client_lists_page_and_filter_by_currency(client, factory, admin_headers):
    for index in range(5):
        create_channel(client, admin_headers, "deposit-channels", name=f"USD {index}", sort_order=index)
    create_channel(client, admin_headers, "deposit-channels", name="EUR", allowed_currencies=["EUR"], sort_order=9)
    headers = factory.headers(client, factory.ib())  # an IB is a client too
    second_page = client.get("/api/v1/client/deposit-channels?page=2&size=2", headers=headers).get_json()
    assert second_page["total"] == 6
    assert [row["name"] for row in second_page["list"]] == ["USD 2", "USD 3"]
    eur = client.get("/api/v1/client/deposit-channels?currency=EUR", headers=headers).get_json()
    assert [row["name"] for row in eur["list"]] == ["EUR"]
    assert client.get("/api/v1/client/deposit-channels?size=500", headers=headers).status_code == 422
    # A query key the route does not read is ignored (caches add `_t=`), an empty filter is none.
    assert client.get("/api/v1/client/deposit-channels?colour=red&_t=1", headers=headers).get_json()["total"] == 6
    assert client.get("/api/v1/client/deposit-channels?currency=", headers=headers).get_json()["total"] == 6


def test_routes_need_a_token_and_the_right_role(client, factory, admin_headers):
    for path in ("/api/v1/client/deposit-channels", "/api/v1/client/withdrawal-channels"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers=admin_headers).status_code == 403
    user_headers = factory.headers(client, factory.user())
    for resource in RESOURCES:
        assert client.get(f"/api/v1/admin/{resource}").status_code == 401
        assert client.get(f"/api/v1/admin/{resource}", headers=user_headers).status_code == 403
        response = client.post(f"/api/v1/admin/{resource}", headers=user_headers, json=channel_body())
        assert response.status_code == 403


# Fees, limits and rates (the services the deposit and withdrawal flows call) --------------------


def channel(**values):
    from crm_app.funding.models import WithdrawalChannel

    defaults = {
        "min_amount": Decimal("50"),
        "max_amount": Decimal("1000"),
        "fee_fixed": Decimal("0"),
        "fee_percent": Decimal("0"),
        "allowed_currencies": ["USD"],
        "exchange_rate_source": "none",
        "exchange_rates": {},
        "enabled": True,
        "allowed_countries": [],
    }
    return WithdrawalChannel(**{**defaults, **values})


@pytest.mark.parametrize(
    ("fixed", "percent", "shown"),
    [
        ("5", "0", "5.00"),
        ("0", "0.5", "0.5%"),
        ("0", "1.0000", "1%"),
        ("0", "100", "100%"),
        ("5", "0.25", "5.00 + 0.25%"),
        ("0", "0", "0.00"),
    ],
)
def test_fee_is_rendered_as_a_fixed_amount_a_percentage_or_both(fixed, percent, shown):
    from crm_app.funding.services import render_fee

    assert render_fee(channel(fee_fixed=Decimal(fixed), fee_percent=Decimal(percent))) == shown


@pytest.mark.parametrize(
    ("fixed", "percent", "amount", "fee"),
    [
        ("5", "0", "100", "5.00"),
        ("0", "0.5", "100", "0.50"),
        ("0", "0.5", "1.01", "0.01"),  # 0.00505 rounds half-up
        ("0", "0.5", "0.99", "0.00"),  # 0.00495
        ("0", "0.3", "50.00", "0.15"),
        ("2.50", "1.5", "333.33", "7.50"),  # 2.50 + 4.99995
    ],
)
def test_compute_fee_adds_fixed_and_percent_rounded_half_up_to_cents(fixed, percent, amount, fee):
    from crm_app.funding.services import compute_fee

    result = compute_fee(channel(fee_fixed=Decimal(fixed), fee_percent=Decimal(percent)), Decimal(amount))
    assert result == Decimal(fee) and result.as_tuple().exponent == -2


def test_amount_limits_are_inclusive_and_name_the_field():
    from crm_app.common.errors import ValidationFailed
    from crm_app.funding.services import check_amount_limits

    limits = channel(min_amount=Decimal("50"), max_amount=Decimal("1000"))
    for amount in ("50", "50.00", "999.99", "1000"):
        check_amount_limits(limits, Decimal(amount))
    for amount in ("49.99", "1000.01", "0", "-10"):
        with pytest.raises(ValidationFailed) as caught:
            check_amount_limits(limits, Decimal(amount), field="withdrawal_amount")
        assert caught.value.status == 422
        assert caught.value.errors == {"withdrawal_amount": ["Must be between 50.00 and 1000.00."]}


def test_exchange_rate_is_one_without_a_source_and_the_admins_rate_when_fixed():
    from crm_app.common.errors import ValidationFailed
    from crm_app.funding.services import exchange_rate

    assert exchange_rate(channel(), "USD") == Decimal("1")
    fixed = channel(
        allowed_currencies=["USD", "CNY"], exchange_rate_source="fixed", exchange_rates={"USD": "1", "CNY": "7.1"}
    )
    assert exchange_rate(fixed, "CNY") == Decimal("7.1")
    with pytest.raises(ValidationFailed):
        exchange_rate(fixed, "EUR")


def test_get_open_channel_refuses_disabled_and_closed_channels(client, factory, admin_headers):
    from crm_app.common.errors import ValidationFailed
    from crm_app.funding.services import get_open_channel

    open_one = create_channel(client, admin_headers, "deposit-channels")
    uk_only = create_channel(client, admin_headers, "deposit-channels", allowed_countries=["GB"])
    disabled = create_channel(client, admin_headers, "deposit-channels", enabled=False)
    withdrawal = create_channel(client, admin_headers, "withdrawal-channels")
    user = factory.user()
    set_kyc_country(user, "FR")
    assert get_open_channel("deposit", user.id, open_one["id"]).id == open_one["id"]
    for channel_id in (uk_only["id"], disabled["id"], 999999):
        with pytest.raises(ValidationFailed) as caught:
            get_open_channel("deposit", user.id, channel_id)
        assert list(caught.value.errors) == ["remittance_id"]
    assert get_open_channel("withdrawal", user.id, withdrawal["id"]).id == withdrawal["id"]


# Demo data -------------------------------------------------------------------------------------


def test_demo_channels_are_one_per_method_valid_and_loaded_once(client, ctx, admin_headers):
    from sqlalchemy import func, select

    from crm_app.extensions import db
    from crm_app.funding.demo import seed_funding_demo
    from crm_app.funding.models import DepositChannel, WithdrawalChannel

    seed_funding_demo()
    seed_funding_demo()
    for model in (DepositChannel, WithdrawalChannel):
        assert db.session.scalar(select(func.count()).select_from(model)) == 3
        assert sorted(db.session.scalars(select(model.method))) == [
            "bank_transfer",
            "cryptocurrency",
            "international_wire_transfer",
        ]
    for resource in RESOURCES:
        for row in client.get(f"/api/v1/admin/{resource}", headers=admin_headers).get_json()["list"]:
            # Each demo channel passes the admin's own rules when saved again as it is.
            resend = {k: v for k, v in row.items() if k not in ("id", "fee", "created_at", "updated_at")}
            response = client.post(f"/api/v1/admin/{resource}", headers=admin_headers, json=resend)
            assert response.status_code == 201, (row["name"], response.get_json())
