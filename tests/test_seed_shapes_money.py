"""The seed's own bodies for #26 (withdrawal), #31 (new payout account) and #34 (update one)
are accepted: they carry all three info objects, as a form with a tab per method sends them.
The object of the method is used; the other two, left empty (null, {}, empty strings, a
preselected network or country), are ignored; one holding typed data is a 422 naming it and
the one used. `bank_country` is read as people write it and stored as ISO alpha-2; a crypto
network off the list is refused naming the list. Issue 11's rules stay: the payee is the KYC
legal name, and money leaves live accounts only."""

import copy
import re
import time
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from crm_app.extensions import db
from crm_app.funding.models import PaymentAccount
from crm_app.withdrawals.models import Withdrawal
from tests.support.money import (
    add_currencies,
    add_withdrawal_channel,
    fund,
    open_live_account,
    server_balance,
    verified_client,
)
from tests.support.trading import open_demo

# Copied from the seed (crm-saas-api.txt), example values and all ------------------------------

SEED_26_WITHDRAWAL = {
    "bank_transfer_info": {
        "account_holder_name": "string",
        "bank_country": "string",
        "bank_name": "string",
        "bank_no": "string",
        "branch_name": "string",
        "bsc_code": "string",
    },
    "cryptocurrency_info": {"currency": "string", "network": "string", "wallet_address": "string"},
    "currency": "string",
    "email_code": "string",
    "exchange_rate": "string",
    "fee": "string",
    "international_wire_info": {
        "account_holder_name": "string",
        "bank_country": "string",
        "bank_name": "string",
        "bank_no": "string",
        "beneficiary_address": "string",
        "swift_code": "string",
    },
    "method": "string",
    "remark": "string",
    "remittance_amount": "string",
    "remittance_id": 0,
    "trading_account_id": 0,
    "withdrawal_amount": "string",
}

SEED_31_NEW_PAYOUT_ACCOUNT = {
    "bank_transfer_info": {
        "bank_country": "string",
        "bank_name": "string",
        "bank_no": "string",
        "branch_name": "string",
        "bsc_code": "string",
    },
    "cryptocurrency_info": {"network": "string", "wallet_address": "string"},
    "international_wire_info": {
        "bank_country": "string",
        "bank_name": "string",
        "bank_no": "string",
        "beneficiary_address": "string",
        "swift_code": "string",
    },
    "payment_method": "string",
    "remark": "string",
}

SEED_34_UPDATE_PAYOUT_ACCOUNT = {
    "bank_transfer_info": {
        "bank_country": "string",
        "bank_name": "string",
        "bank_no": "string",
        "branch_name": "string",
        "bsc_code": "string",
    },
    "cryptocurrency_info": {"network": "string", "wallet_address": "string"},
    "id": 0,
    "international_wire_info": {
        "bank_country": "string",
        "bank_name": "string",
        "bank_no": "string",
        "beneficiary_address": "string",
        "swift_code": "string",
    },
    "is_default": True,
    "remark": "string",
}

INFO_KEYS = ("bank_transfer_info", "cryptocurrency_info", "international_wire_info")
TRC20 = "TMASi45ub7Qe4ZE36UT5G6cU4ud8Fhhe4d"
BANK = {
    "bank_country": "United Kingdom",
    "bank_name": "Demo Bank",
    "bank_no": "GB33 BUKB 2020 1555 5555 55",
    "branch_name": "City",
    "bsc_code": "20-20-15",
}
WIRE = {
    "bank_country": "gbr",
    "bank_name": "NatWest",
    "bank_no": "GB29 NWBK 6016 1331 9268 19",
    "beneficiary_address": "1 Example Street, London",
    "swift_code": "NWBKGB2L",
}
CRYPTO = {"network": "trc20", "wallet_address": TRC20}
PAYOUT_INFO = {"bank_transfer": BANK, "international_wire_transfer": WIRE, "cryptocurrency": CRYPTO}
KEY_OF = {
    "bank_transfer": "bank_transfer_info",
    "international_wire_transfer": "international_wire_info",
    "cryptocurrency": "cryptocurrency_info",
}
# How a form sends the tabs nobody used.
BLANK_TABS = {
    "empty strings": lambda fields: dict.fromkeys(fields, ""),
    "null": lambda fields: None,
    "empty object": lambda fields: {},
    "preselected choices": lambda fields: {
        name: {"network": "TRC20", "bank_country": "GB", "currency": "USDT"}.get(name, "") for name in fields
    },
}


def from_seed(seed, used_key, info, blank="empty strings", **top):
    """The seed's body with its shape kept: the used object holds the seed's fields with real
    values (empty where the form's field is optional and unused), the other objects are tabs
    left blank, and the top-level fields get real values and ids."""
    body = copy.deepcopy(seed)
    for key in INFO_KEYS:
        fields = list(seed[key])
        if key == used_key:
            body[key] = {**dict.fromkeys(fields, ""), **info}
            assert set(body[key]) == set(fields), "only the seed's fields"
        else:
            body[key] = BLANK_TABS[blank](fields)
    body.update(top)
    assert set(body) == set(seed), "only the seed's fields"
    return body


def count(model):
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(model))


# #31 and #34: payout accounts ------------------------------------------------------------------

ACCOUNTS = "/api/v1/client/payment-accounts"


@pytest.fixture
def payee(client, factory):
    user, headers = verified_client(client, factory, first_name="Ann", last_name="Client")
    return {"user": user, "headers": headers}


@pytest.mark.parametrize("blank", list(BLANK_TABS))
@pytest.mark.parametrize("method", list(PAYOUT_INFO))
def test_seed_31_body_with_all_three_info_objects_is_accepted(client, payee, method, blank):
    body = from_seed(
        SEED_31_NEW_PAYOUT_ACCOUNT, KEY_OF[method], PAYOUT_INFO[method], blank, payment_method=method, remark="main"
    )
    response = client.post(ACCOUNTS, headers=payee["headers"], json=body)
    assert response.status_code == 201, response.get_json()

    saved = client.get(f"{ACCOUNTS}/{response.get_json()['id']}", headers=payee["headers"]).get_json()
    assert saved["payment_method"] == method and saved["remark"] == "main"
    assert saved["account_holder_name"] == "Ann Client"  # the KYC legal name
    for key in INFO_KEYS:
        assert (saved[key] is None) == (key != KEY_OF[method]), key
    info = saved[KEY_OF[method]]
    if method == "cryptocurrency":
        assert info == {"network": "TRC20", "wallet_address": TRC20}
    else:
        assert info["bank_country"] == "GB"


@pytest.mark.parametrize(
    "written", ["GB", "gb", " Gb ", "GBR", "gbr", "United Kingdom", "united kingdom", "UK", "Great Britain"]
)
def test_bank_country_is_read_as_people_write_it_and_stored_as_alpha_2(client, payee, written):
    body = from_seed(
        SEED_31_NEW_PAYOUT_ACCOUNT,
        "bank_transfer_info",
        {**BANK, "bank_country": written},
        payment_method="bank_transfer",
    )
    response = client.post(ACCOUNTS, headers=payee["headers"], json=body)
    assert response.status_code == 201, response.get_json()
    listed = client.get(ACCOUNTS, headers=payee["headers"]).get_json()["bank_transfer"]
    assert [row["bank_country"] for row in listed] == ["GB"]
    stored = db.session.scalar(select(PaymentAccount.bank_country))
    assert stored == "GB"


@pytest.mark.parametrize(("written", "code"), [("Côte d'Ivoire", "CI"), ("South Korea", "KR"), ("CHN", "CN")])
def test_other_country_names_and_alpha_3_codes(client, payee, written, code):
    body = from_seed(
        SEED_31_NEW_PAYOUT_ACCOUNT,
        "bank_transfer_info",
        {**BANK, "bank_country": written},
        payment_method="bank_transfer",
    )
    response = client.post(ACCOUNTS, headers=payee["headers"], json=body)
    assert response.status_code == 201, response.get_json()
    saved = client.get(f"{ACCOUNTS}/{response.get_json()['id']}", headers=payee["headers"]).get_json()
    assert saved["bank_transfer_info"]["bank_country"] == code


def test_a_country_nobody_knows_is_422_naming_the_field(client, payee):
    body = from_seed(
        SEED_31_NEW_PAYOUT_ACCOUNT,
        "bank_transfer_info",
        {**BANK, "bank_country": "Atlantis"},
        payment_method="bank_transfer",
    )
    response = client.post(ACCOUNTS, headers=payee["headers"], json=body)
    assert response.status_code == 422
    assert "bank_country" in response.get_json()["errors"]["bank_transfer_info"]
    assert count(PaymentAccount) == 0


def test_a_network_off_the_list_is_refused_naming_the_list(client, payee):
    body = from_seed(
        SEED_31_NEW_PAYOUT_ACCOUNT,
        "cryptocurrency_info",
        {"network": "DOGE", "wallet_address": TRC20},
        payment_method="cryptocurrency",
    )
    response = client.post(ACCOUNTS, headers=payee["headers"], json=body)
    assert response.status_code == 422
    message = response.get_json()["errors"]["cryptocurrency_info"]["network"][0]
    for network in ("TRC20", "ERC20", "BEP20", "BTC"):
        assert network in message
    assert count(PaymentAccount) == 0


@pytest.mark.parametrize("written", ["TRC-20", "trc 20", "Trc20"])
def test_networks_are_read_in_any_case(client, payee, written):
    body = from_seed(
        SEED_31_NEW_PAYOUT_ACCOUNT,
        "cryptocurrency_info",
        {"network": written, "wallet_address": TRC20},
        payment_method="cryptocurrency",
    )
    response = client.post(ACCOUNTS, headers=payee["headers"], json=body)
    assert response.status_code == 201, response.get_json()
    assert client.get(ACCOUNTS, headers=payee["headers"]).get_json()["cryptocurrency"][0]["network"] == "TRC20"


def test_the_verbatim_seed_31_body_is_refused_naming_the_objects_that_hold_typed_data(client, payee):
    """The seed's example as it stands ("string" typed into every tab): the bank tab is used,
    and the two others are named, with the one used."""
    body = {**copy.deepcopy(SEED_31_NEW_PAYOUT_ACCOUNT), "payment_method": "bank_transfer"}
    body["bank_transfer_info"] = dict(BANK)
    response = client.post(ACCOUNTS, headers=payee["headers"], json=body)
    assert response.status_code == 422
    errors = response.get_json()["errors"]
    assert set(errors) == {"cryptocurrency_info", "international_wire_info"}
    assert "bank_transfer_info is the one used" in errors["cryptocurrency_info"][0]
    assert count(PaymentAccount) == 0


def test_a_wire_tab_holding_typed_data_with_a_crypto_method_is_422(client, payee):
    body = from_seed(SEED_31_NEW_PAYOUT_ACCOUNT, "cryptocurrency_info", CRYPTO, payment_method="cryptocurrency")
    body["international_wire_info"]["bank_name"] = "NatWest"
    response = client.post(ACCOUNTS, headers=payee["headers"], json=body)
    assert response.status_code == 422
    assert list(response.get_json()["errors"]) == ["international_wire_info"]
    assert "cryptocurrency_info is the one used" in response.get_json()["errors"]["international_wire_info"][0]
    assert count(PaymentAccount) == 0


def create_account(client, headers, method="bank_transfer"):
    body = from_seed(SEED_31_NEW_PAYOUT_ACCOUNT, KEY_OF[method], PAYOUT_INFO[method], payment_method=method)
    response = client.post(ACCOUNTS, headers=headers, json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


@pytest.mark.parametrize("blank", list(BLANK_TABS))
def test_seed_34_body_with_all_three_info_objects_is_accepted(client, payee, blank):
    headers = payee["headers"]
    create_account(client, headers)
    account_id = create_account(client, headers)  # the second bank account: not the default yet
    changed = {**BANK, "bank_country": "de", "bank_name": "Deutsche Bank", "bank_no": "DE89370400440532013000"}
    body = from_seed(
        SEED_34_UPDATE_PAYOUT_ACCOUNT, "bank_transfer_info", changed, blank, id=account_id, remark="salary"
    )
    response = client.put(f"{ACCOUNTS}/{account_id}", headers=headers, json=body)
    assert response.status_code == 200, response.get_json()

    saved = client.get(f"{ACCOUNTS}/{account_id}", headers=headers).get_json()
    assert saved["bank_transfer_info"]["bank_country"] == "DE"
    assert saved["bank_transfer_info"]["bank_name"] == "Deutsche Bank"
    assert saved["bank_transfer_info"]["bank_no"] == "DE89370400440532013000"
    assert saved["remark"] == "salary"
    assert saved["cryptocurrency_info"] is None and saved["international_wire_info"] is None
    listed = client.get(ACCOUNTS, headers=headers).get_json()["bank_transfer"]
    assert listed[0]["id"] == account_id and listed[0]["is_default"] is True


def test_seed_34_body_for_a_crypto_account_is_accepted(client, payee):
    headers = payee["headers"]
    account_id = create_account(client, headers, "cryptocurrency")
    erc20 = "0x52908400098527886E0F7030069857D2E4169EE7"
    body = from_seed(
        SEED_34_UPDATE_PAYOUT_ACCOUNT,
        "cryptocurrency_info",
        {"network": "ERC-20", "wallet_address": erc20},
        id=account_id,
        remark="cold wallet",
    )
    response = client.put(f"{ACCOUNTS}/{account_id}", headers=headers, json=body)
    assert response.status_code == 200, response.get_json()
    saved = client.get(f"{ACCOUNTS}/{account_id}", headers=headers).get_json()
    assert saved["cryptocurrency_info"] == {"network": "ERC20", "wallet_address": erc20}


def test_the_verbatim_seed_34_body_is_refused_naming_the_other_methods_objects(client, payee):
    """On a bank account the seed's "string"-filled crypto and wire tabs are typed data for
    another method: named, with the one used, and nothing changes (even though those
    objects would not pass their own checks either)."""
    headers = payee["headers"]
    account_id = create_account(client, headers)
    body = {**copy.deepcopy(SEED_34_UPDATE_PAYOUT_ACCOUNT), "id": account_id}
    body["bank_transfer_info"] = {**BANK, "bank_name": "Changed Bank"}
    response = client.put(f"{ACCOUNTS}/{account_id}", headers=headers, json=body)
    assert response.status_code == 422, response.get_json()
    errors = response.get_json()["errors"]
    assert set(errors) == {"cryptocurrency_info", "international_wire_info"}
    assert "this is a bank_transfer account, so bank_transfer_info is the one used" in errors["cryptocurrency_info"][0]
    assert client.get(f"{ACCOUNTS}/{account_id}", headers=headers).get_json()["bank_transfer_info"]["bank_name"] == (
        "Demo Bank"
    )


def test_an_update_still_checks_the_accounts_own_object(client, payee):
    headers = payee["headers"]
    account_id = create_account(client, headers)
    body = from_seed(
        SEED_34_UPDATE_PAYOUT_ACCOUNT, "bank_transfer_info", {**BANK, "bank_country": "Atlantis"}, id=account_id
    )
    response = client.put(f"{ACCOUNTS}/{account_id}", headers=headers, json=body)
    assert response.status_code == 422
    assert "bank_country" in response.get_json()["errors"]["bank_transfer_info"]


# How a form sends the account's own tab when only the remark was changed ("provide when
# updating": the seed sends every object, so an untouched one arrives empty).
OWN_TAB_LEFT_BLANK = {
    "empty object": lambda fields: {},
    "empty strings": lambda fields: dict.fromkeys(fields, ""),
    "null fields": lambda fields: dict.fromkeys(fields, None),
    "null": lambda fields: None,
}


@pytest.mark.parametrize("own_blank", list(OWN_TAB_LEFT_BLANK))
@pytest.mark.parametrize("method", list(PAYOUT_INFO))
def test_seed_34_updating_only_the_remark_leaves_the_details_as_they_are(client, payee, method, own_blank):
    """The seed's #34 body with every info object left blank (the account's own included)
    changes the remark and nothing else."""
    headers = payee["headers"]
    account_id = create_account(client, headers, method)
    before = client.get(f"{ACCOUNTS}/{account_id}", headers=headers).get_json()
    body = from_seed(SEED_34_UPDATE_PAYOUT_ACCOUNT, None, {}, "empty strings", id=account_id, remark="only this")
    own = KEY_OF[method]
    body[own] = OWN_TAB_LEFT_BLANK[own_blank](list(SEED_34_UPDATE_PAYOUT_ACCOUNT[own]))
    response = client.put(f"{ACCOUNTS}/{account_id}", headers=headers, json=body)
    assert response.status_code == 200, response.get_json()

    after = client.get(f"{ACCOUNTS}/{account_id}", headers=headers).get_json()
    assert after["remark"] == "only this"
    assert after[own] == before[own] and after[own]
    assert after["account_holder_name"] == before["account_holder_name"]


PARTLY_FILLED = {
    "bank_transfer": ({"bank_name": "Second Bank"}, {"bank_name": "Second Bank"}),
    "international_wire_transfer": (
        {"beneficiary_address": "2 Other Street"},
        {"beneficiary_address": "2 Other Street"},
    ),
    "cryptocurrency": ({"wallet_address": "T" + "2" * 33}, {"wallet_address": "T" + "2" * 33}),
}


@pytest.mark.parametrize("method", list(PAYOUT_INFO))
def test_seed_34_a_partly_filled_object_changes_only_what_was_filled_in(client, payee, method):
    """Fields left "" or null in the account's own object are unchanged, the optional ones
    (`branch_name`, `bsc_code`) included: a form cannot tell emptied from never filled."""
    headers = payee["headers"]
    account_id = create_account(client, headers, method)
    own = KEY_OF[method]
    before = client.get(f"{ACCOUNTS}/{account_id}", headers=headers).get_json()[own]
    sent, changed = PARTLY_FILLED[method]
    for blank in ("", None):
        body = from_seed(SEED_34_UPDATE_PAYOUT_ACCOUNT, None, {}, "null", id=account_id, remark="")
        body[own] = {**dict.fromkeys(SEED_34_UPDATE_PAYOUT_ACCOUNT[own], blank), **sent}
        response = client.put(f"{ACCOUNTS}/{account_id}", headers=headers, json=body)
        assert response.status_code == 200, response.get_json()
        assert client.get(f"{ACCOUNTS}/{account_id}", headers=headers).get_json()[own] == {**before, **changed}


# #26: withdrawals -------------------------------------------------------------------------------

WITHDRAWALS = "/api/v1/client/withdrawals"


@pytest.fixture
def desk(client, factory, book):
    """A verified client (KYC: Ann Client) with a funded live account, a bank channel (fee 5.00)
    and a USDT crypto channel (fee 1%, rate 1.01)."""
    admin_headers = book["admin_headers"]
    add_currencies(client, admin_headers)
    bank = add_withdrawal_channel(client, admin_headers)
    crypto = add_withdrawal_channel(
        client,
        admin_headers,
        method="cryptocurrency",
        name="USDT (TRC20)",
        allowed_currencies=["USDT"],
        fee_fixed="0",
        fee_percent="1",
        exchange_rate_source="fixed",
        exchange_rates={"USDT": "1.01"},
    )
    user, headers = verified_client(client, factory)
    account_id = open_live_account(client, headers, book)
    fund(account_id, "1000.00")
    return {"user": user, "headers": headers, "account": account_id, "bank": bank, "crypto": crypto}


@pytest.fixture
def no_email_code(ctx):
    from crm_app.broker.services import update_setting

    update_setting("broker", {"email_code_required": {"withdrawal": False}})


BANK_PAYEE = {**BANK, "account_holder_name": ""}  # empty: the KYC legal name


def bank_withdrawal(desk, info=BANK_PAYEE, blank="empty strings", **top):
    values = {
        "currency": "USD",
        "email_code": "",
        "exchange_rate": "1",
        "fee": "5.00",
        "method": "bank_transfer",
        "remark": "rent",
        "remittance_amount": "95.00",
        "remittance_id": desk["bank"]["id"],
        "trading_account_id": desk["account"],
        "withdrawal_amount": "100.00",
    }
    return from_seed(SEED_26_WITHDRAWAL, "bank_transfer_info", info, blank, **{**values, **top})


def test_seed_26_body_is_accepted_with_a_real_email_code(client, desk, smtp_sink, run_jobs, wait_for):
    email = desk["user"].email
    asked = client.post(
        "/api/v1/auth/email-code", json={"email": email, "scene": "withdrawal", "received_at": int(time.time())}
    )
    assert asked.status_code == 200, asked.get_json()
    run_jobs()
    text = wait_for(lambda: smtp_sink.texts_to(email))[-1]
    code = re.search(r"\b(\d{6})\b", text).group(1)
    response = client.post(WITHDRAWALS, headers=desk["headers"], json=bank_withdrawal(desk, email_code=code))
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["order_number"]
    assert server_balance(desk["account"]) == Decimal("900.00")

    row = client.get(WITHDRAWALS, headers=desk["headers"]).get_json()["list"][0]
    assert row["method"] == "bank_transfer"
    assert row["bank_transfer_info"]["bank_country"] == "GB"  # written "United Kingdom"
    assert row["bank_transfer_info"]["account_holder_name"] == "Ann Client"
    assert row["cryptocurrency_info"] is None and row["international_wire_info"] is None


@pytest.mark.parametrize("blank", list(BLANK_TABS))
def test_seed_26_body_ignores_the_blank_tabs(client, desk, no_email_code, blank):
    response = client.post(WITHDRAWALS, headers=desk["headers"], json=bank_withdrawal(desk, blank=blank))
    assert response.status_code == 201, response.get_json()


def test_seed_26_crypto_body_is_accepted(client, desk, no_email_code):
    body = from_seed(
        SEED_26_WITHDRAWAL,
        "cryptocurrency_info",
        {"currency": "", "network": "TRC20", "wallet_address": TRC20},  # currency empty: the top-level one
        currency="USDT",
        email_code="",
        exchange_rate="1.01",
        fee="1.00",
        method="cryptocurrency",
        remark="",
        remittance_amount="99.99",
        remittance_id=desk["crypto"]["id"],
        trading_account_id=desk["account"],
        withdrawal_amount="100.00",
    )
    response = client.post(WITHDRAWALS, headers=desk["headers"], json=body)
    assert response.status_code == 201, response.get_json()
    row = client.get(WITHDRAWALS, headers=desk["headers"]).get_json()["list"][0]
    assert row["cryptocurrency_info"] == {"currency": "USDT", "network": "TRC20", "wallet_address": TRC20}


def test_seed_26_with_typed_data_in_another_tab_is_422_and_moves_no_money(client, desk, no_email_code):
    body = bank_withdrawal(desk)
    body["cryptocurrency_info"]["wallet_address"] = TRC20
    response = client.post(WITHDRAWALS, headers=desk["headers"], json=body)
    assert response.status_code == 422
    errors = response.get_json()["errors"]
    assert list(errors) == ["cryptocurrency_info"]
    assert errors["cryptocurrency_info"] == [
        "Must be empty or null: method is bank_transfer, so bank_transfer_info is the one used."
    ]
    assert count(Withdrawal) == 0
    assert server_balance(desk["account"]) == Decimal("1000.00")


def test_seed_26_payee_is_still_the_kyc_legal_name(client, desk, no_email_code):
    body = bank_withdrawal(desk, info={**BANK, "account_holder_name": "Someone Else"})
    response = client.post(WITHDRAWALS, headers=desk["headers"], json=body)
    assert response.status_code == 422
    assert response.get_json()["code"] == "payee_name_mismatch"
    assert "account_holder_name" in response.get_json()["errors"]["bank_transfer_info"]
    assert count(Withdrawal) == 0


def test_seed_26_from_a_demo_account_is_still_refused(client, desk, no_email_code, book):
    demo_id = open_demo(client, desk["headers"], book).get_json()["id"]
    response = client.post(WITHDRAWALS, headers=desk["headers"], json=bank_withdrawal(desk, trading_account_id=demo_id))
    assert response.status_code == 422
    assert response.get_json()["code"] == "demo_account_not_allowed"
    assert count(Withdrawal) == 0


def test_seed_26_with_a_saved_payout_account_ignores_the_blank_tab_of_its_method(client, desk, no_email_code):
    """Not in the seed: `payment_account_id` names a saved account; the form's own tab, left
    empty, is not 'both at once'."""
    saved_id = create_account(client, desk["headers"])
    body = bank_withdrawal(desk, info=dict.fromkeys(SEED_26_WITHDRAWAL["bank_transfer_info"], ""))
    body["payment_account_id"] = saved_id
    response = client.post(WITHDRAWALS, headers=desk["headers"], json=body)
    assert response.status_code == 201, response.get_json()
    row = client.get(WITHDRAWALS, headers=desk["headers"]).get_json()["list"][0]
    assert row["bank_transfer_info"]["bank_name"] == "Demo Bank"
