"""A bank or wire withdrawal pays only the client: its payee name must be the KYC legal
name. First the comparison itself (one small function, no app needed), then the rule
through the API: withdrawals, saved payout accounts, the broker's switch, the review item."""

from decimal import Decimal

import pytest
from sqlalchemy import func, select

from crm_app.common.names import name_parts, same_person_name


@pytest.mark.parametrize(
    ("written", "legal"),
    [
        ("Wei Zhang", "Wei Zhang"),
        ("ZHANG  wei", "Wei Zhang"),  # family name first, other case, double space
        ("ZhangWei", "Wei Zhang"),  # no space at all, parts swapped
        ("zhangwei", "Wei Zhang"),
        ("Zhang, Wei", "Wei Zhang"),  # "family, given" as forms write it
        ("张伟", "张 伟"),
        ("伟 张", "张伟"),
        ("Ｗｅｉ　Ｚｈａｎｇ", "Wei Zhang"),  # full-width letters and ideographic space (NFKC)
        ("Mary-Jane O'Neil", "MARY JANE ONEIL"),
        ("J. R. R. Tolkien", "Tolkien J R R"),
        ("Straße", "STRASSE"),  # casefold, not lower
        ("  Ann\tClient\n", "Ann Client"),
        ("约翰·史密斯", "约翰 史密斯"),  # the middle dot of transliterated names
    ],
)
def test_the_same_name_written_differently_matches(written, legal):
    assert same_person_name(written, legal)
    assert same_person_name(legal, written)


@pytest.mark.parametrize(
    ("written", "legal"),
    [
        ("Li Na", "Wei Zhang"),  # another person
        ("Wei Zhang Jr", "Wei Zhang"),  # an extra part is another name
        ("Wei", "Wei Zhang"),  # a part missing
        ("Zhang Wei Wei", "Wei Zhang"),
        ("张伟", "伟张"),  # characters reordered inside one part are another name
        ("张伟", "张三"),
        ("", "Wei Zhang"),  # nothing written matches nothing
        ("...", "Wei Zhang"),
        ("Wei Zhang", ""),  # no legal name on file: nothing can match it
        ("Weizhang Co Ltd", "Wei Zhang"),
    ],
)
def test_a_different_name_does_not_match(written, legal):
    assert not same_person_name(written, legal)
    assert not same_person_name(legal, written)


def test_parts_are_split_at_spaces_and_punctuation_and_case_folded():
    assert name_parts(" Mary-Jane  O'Neil ") == ("mary", "jane", "o", "neil")
    assert name_parts("ＺＨＡＮＧ　Wei") == ("zhang", "wei")
    assert name_parts(None) == ()


def test_a_very_long_text_is_compared_without_blowing_up():
    many = " ".join(f"part{i}" for i in range(40))
    assert same_person_name(many, many)
    assert not same_person_name(many, " ".join(reversed(many.split())))


# Through the API: withdrawals and payout accounts pay only the client ------------------

BANK = {
    "bank_country": "GB",
    "bank_name": "Demo Bank",
    "bank_no": "GB33BUKB20201555555555",
    "branch_name": "City",
    "bsc_code": "20-20-15",
}
WIRE = {
    "bank_country": "GB",
    "bank_name": "NatWest",
    "bank_no": "GB29NWBK60161331926819",
    "beneficiary_address": "1 Example Street, London",
    "swift_code": "NWBKGB2L",
}
TRC20_WALLET = "T" + "A" * 33


@pytest.fixture
def desk(client, factory, book):
    """A client verified as 伟 张 (given name Wei, family name Zhang: `Wei Zhang`) with a
    live account holding 1000.00, and bank, wire and crypto channels (fee 5.00, USD)."""
    from crm_app.broker.services import update_setting
    from tests.support.money import add_currencies, add_withdrawal_channel, fund, open_live_account, verified_client

    update_setting("broker", {"email_code_required": {"withdrawal": False}})
    admin = book["admin_headers"]
    add_currencies(client, admin)
    channels = {
        "bank_transfer": add_withdrawal_channel(client, admin),
        "international_wire_transfer": add_withdrawal_channel(
            client, admin, method="international_wire_transfer", name="Wire (USD)"
        ),
        "cryptocurrency": add_withdrawal_channel(client, admin, method="cryptocurrency", name="USD (TRC20)"),
    }
    user, headers = verified_client(client, factory, first_name="Wei", last_name="Zhang")
    account = open_live_account(client, headers, book)
    fund(account, "1000.00")
    return {"user": user, "headers": headers, "account": account, "channels": channels, "book": book}


def withdraw(client, desk, method="bank_transfer", info=None, **overrides):
    from tests.support.money import withdrawal_body

    base = {"bank_transfer": BANK, "international_wire_transfer": WIRE}.get(method)
    if info is None and "payment_account_id" not in overrides:
        info = dict(base) if base else {"network": "TRC20", "wallet_address": TRC20_WALLET}
    body = withdrawal_body(desk["channels"][method]["id"], desk["account"], method=method, info=info, **overrides)
    return client.post("/api/v1/client/withdrawals", headers=desk["headers"], json=body)


def review(client, desk, answer):
    response = client.get(f"/api/v1/admin/audits/{answer['audit_id']}", headers=desk["book"]["admin_headers"])
    return response.get_json()["object"]


def held():
    from crm_app.extensions import db
    from crm_app.money.models import BalanceOperation
    from crm_app.withdrawals.models import Withdrawal

    db.session.expire_all()
    return (
        db.session.scalar(select(func.count()).select_from(Withdrawal)),
        db.session.scalar(select(func.count()).select_from(BalanceOperation)),
    )


@pytest.mark.parametrize("written", [None, "", "   "])
def test_a_payee_name_left_out_is_the_kyc_legal_name(client, desk, written):
    info = dict(BANK) if written is None else {**BANK, "account_holder_name": written}
    response = withdraw(client, desk, info=info)
    assert response.status_code == 201, response.get_json()
    shown = review(client, desk, response.get_json())
    assert shown["bank_transfer_info"]["account_holder_name"] == "Wei Zhang"
    assert (shown["payee_name"], shown["kyc_legal_name"], shown["payee_matches_kyc"]) == (
        "Wei Zhang",
        "Wei Zhang",
        True,
    )


@pytest.mark.parametrize("written", ["ZHANG  wei", "ZhangWei", "Zhang, Wei", "wei-zhang"])
def test_the_legal_name_in_another_spelling_or_order_is_accepted(client, desk, written):
    response = withdraw(client, desk, info={**BANK, "account_holder_name": written})
    assert response.status_code == 201, response.get_json()
    shown = review(client, desk, response.get_json())
    assert shown["payee_name"] == written and shown["payee_matches_kyc"] is True


@pytest.mark.parametrize(
    ("method", "key"),
    [("bank_transfer", "bank_transfer_info"), ("international_wire_transfer", "international_wire_info")],
)
def test_a_third_partys_name_is_refused_and_nothing_is_held(client, desk, method, key):
    from tests.support.money import server_balance

    base = BANK if method == "bank_transfer" else WIRE
    response = withdraw(client, desk, method, info={**base, "account_holder_name": "Otto Other"})
    assert response.status_code == 422, response.get_json()
    answer = response.get_json()
    assert answer["code"] == "payee_name_mismatch"
    assert list(answer["errors"]) == [key] and list(answer["errors"][key]) == ["account_holder_name"]
    assert "Wei Zhang" in answer["errors"][key]["account_holder_name"][0]
    assert held() == (0, 0)
    assert server_balance(desk["account"]) == Decimal("1000.00")


def test_the_broker_can_switch_the_rule_off_and_the_review_shows_the_mismatch(client, desk):
    admin = desk["book"]["admin_headers"]
    switched = client.put("/api/v1/admin/config/broker", headers=admin, json={"withdrawal_payee_must_match_kyc": False})
    assert switched.status_code == 200, switched.get_json()
    assert switched.get_json()["withdrawal_payee_must_match_kyc"] is False
    assert client.get("/api/v1/config/broker").get_json()["withdrawal_payee_must_match_kyc"] is False

    response = withdraw(client, desk, info={**BANK, "account_holder_name": "Otto Other"})
    assert response.status_code == 201, response.get_json()
    shown = review(client, desk, response.get_json())
    assert (shown["payee_name"], shown["kyc_legal_name"], shown["payee_matches_kyc"]) == (
        "Otto Other",
        "Wei Zhang",
        False,
    )
    # Approval follows the broker's rule: switched off, the back office may pay it.
    approved = client.post(f"/api/v1/admin/audits/{response.get_json()['audit_id']}/approve", headers=admin, json={})
    assert approved.status_code == 200, approved.get_json()


def test_a_third_party_withdrawal_already_queued_cannot_be_paid_once_the_rule_is_on(client, desk):
    admin = desk["book"]["admin_headers"]
    client.put("/api/v1/admin/config/broker", headers=admin, json={"withdrawal_payee_must_match_kyc": False})
    answer = withdraw(client, desk, info={**BANK, "account_holder_name": "Otto Other"}).get_json()
    client.put("/api/v1/admin/config/broker", headers=admin, json={"withdrawal_payee_must_match_kyc": True})
    approved = client.post(f"/api/v1/admin/audits/{answer['audit_id']}/approve", headers=admin, json={})
    assert approved.status_code == 422 and approved.get_json()["code"] == "payee_name_mismatch"


def test_crypto_withdrawals_have_no_holder_name_to_check(client, desk):
    response = withdraw(client, desk, "cryptocurrency")
    assert response.status_code == 201, response.get_json()
    shown = review(client, desk, response.get_json())
    assert shown["payee_name"] is None and shown["payee_matches_kyc"] is None
    assert shown["kyc_legal_name"] == "Wei Zhang"


def test_a_chinese_legal_name_matches_with_or_without_the_space(client, factory, desk):
    from crm_app.broker.services import update_setting
    from tests.support.money import fund, open_live_account, verified_client

    update_setting("broker", {"email_code_required": {"withdrawal": False}})
    _, headers = verified_client(client, factory, first_name="伟", last_name="张")
    account = open_live_account(client, headers, desk["book"])
    fund(account, "500.00")
    desk = {**desk, "headers": headers, "account": account}
    for written, status in (("张伟", 201), ("张 伟", 201), ("张三", 422)):
        response = withdraw(client, desk, info={**BANK, "account_holder_name": written})
        assert response.status_code == status, (written, response.get_json())


# Saved payout accounts (#31, #34) ------------------------------------------------------

PAYMENT_ACCOUNTS = "/api/v1/client/payment-accounts"


def test_saving_a_payout_account_in_another_name_is_refused_at_once(client, desk):
    refused = client.post(
        PAYMENT_ACCOUNTS,
        headers=desk["headers"],
        json={"payment_method": "bank_transfer", "bank_transfer_info": {**BANK, "account_holder_name": "Otto Other"}},
    )
    assert refused.status_code == 422, refused.get_json()
    assert refused.get_json()["code"] == "payee_name_mismatch"
    assert list(refused.get_json()["errors"]["bank_transfer_info"]) == ["account_holder_name"]

    wire = client.post(
        PAYMENT_ACCOUNTS,
        headers=desk["headers"],
        json={
            "payment_method": "international_wire_transfer",
            "international_wire_info": {**WIRE, "account_holder_name": "ZHANG Wei"},
        },
    )
    assert wire.status_code == 201, wire.get_json()
    account_id = wire.get_json()["id"]
    assert (
        client.get(f"{PAYMENT_ACCOUNTS}/{account_id}", headers=desk["headers"]).get_json()["account_holder_name"]
        == "ZHANG Wei"
    )

    changed = client.put(
        f"{PAYMENT_ACCOUNTS}/{account_id}",
        headers=desk["headers"],
        json={"international_wire_info": {"account_holder_name": "Otto Other"}},
    )
    assert changed.status_code == 422, changed.get_json()
    assert changed.get_json()["code"] == "payee_name_mismatch"
    assert "account_holder_name" in changed.get_json()["errors"]["international_wire_info"]
    assert (
        client.get(f"{PAYMENT_ACCOUNTS}/{account_id}", headers=desk["headers"]).get_json()["account_holder_name"]
        == "ZHANG Wei"
    )

    response = withdraw(client, desk, "international_wire_transfer", payment_account_id=account_id)
    assert response.status_code == 201, response.get_json()
    assert review(client, desk, response.get_json())["payee_name"] == "ZHANG Wei"


def test_a_saved_payout_account_in_another_name_cannot_be_paid(client, desk):
    """Saved while the broker allowed it: the check applies again when it is used."""
    admin = desk["book"]["admin_headers"]
    client.put("/api/v1/admin/config/broker", headers=admin, json={"withdrawal_payee_must_match_kyc": False})
    saved = client.post(
        PAYMENT_ACCOUNTS,
        headers=desk["headers"],
        json={"payment_method": "bank_transfer", "bank_transfer_info": {**BANK, "account_holder_name": "Otto Other"}},
    )
    assert saved.status_code == 201, saved.get_json()
    client.put("/api/v1/admin/config/broker", headers=admin, json={"withdrawal_payee_must_match_kyc": True})
    response = withdraw(client, desk, payment_account_id=saved.get_json()["id"])
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["code"] == "payee_name_mismatch"
    assert list(response.get_json()["errors"]) == ["payment_account_id"]
    assert held() == (0, 0)


@pytest.mark.parametrize("written", ["Wei Zhang\u202e", "Wei\u200bZhang", "Wei Zhang\u0007", "\u2066Wei Zhang\u2069"])
def test_a_payee_name_with_hidden_or_text_direction_characters_is_refused(client, desk, written):
    """A reviewer must read the name that is stored: no override, zero-width or control characters."""
    refused = client.post(
        PAYMENT_ACCOUNTS,
        headers=desk["headers"],
        json={"payment_method": "bank_transfer", "bank_transfer_info": {**BANK, "account_holder_name": written}},
    )
    assert refused.status_code == 422, refused.get_json()
    assert list(refused.get_json()["errors"]["bank_transfer_info"]) == ["account_holder_name"]
    response = withdraw(client, desk, info={**BANK, "account_holder_name": written})
    assert response.status_code == 422, response.get_json()
    assert held() == (0, 0)


def test_a_payout_account_with_a_name_before_kyc_says_kyc_comes_first(client, factory):
    user = factory.user()
    response = client.post(
        PAYMENT_ACCOUNTS,
        headers=factory.headers(client, user),
        json={"payment_method": "bank_transfer", "bank_transfer_info": {**BANK, "account_holder_name": "Ann Lee"}},
    )
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["code"] == "kyc_required"
    assert list(response.get_json()["errors"]["bank_transfer_info"]) == ["account_holder_name"]
