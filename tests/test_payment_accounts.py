"""Payout accounts (#31-#34): one info object per method, one default per method (also in
the database), numbers and addresses encrypted at rest, only ever shown to their owner."""

import threading
from datetime import datetime

import pytest
import sqlalchemy as sa

BANK = {
    "bank_country": "cn",
    "bank_name": "Bank of China",
    "bank_no": "6217 8600 0001 2345 678",
    "branch_name": "Shanghai Pudong",
    "bsc_code": "104290003",
}
WIRE = {
    "bank_country": "GB",
    "bank_name": "NatWest",
    "bank_no": "GB29 NWBK 6016 1331 9268 19",
    "beneficiary_address": "1 Example Street, London",
    "swift_code": "nwbkgb2l",
}
TRC20 = "TMASi45ub7Qe4ZE36UT5G6cU4ud8Fhhe4d"
ERC20 = "0x52908400098527886E0F7030069857D2E4169EE7"
CRYPTO = {"network": "TRC20", "wallet_address": TRC20}
INFO = {
    "bank_transfer": ("bank_transfer_info", BANK),
    "international_wire_transfer": ("international_wire_info", WIRE),
    "cryptocurrency": ("cryptocurrency_info", CRYPTO),
}
URL = "/api/v1/client/payment-accounts"


@pytest.fixture
def user(factory):
    return factory.user(first_name="Lin", last_name="Wei")


@pytest.fixture
def headers(client, factory, user):
    return factory.headers(client, user)


def body(method="bank_transfer", remark=None, **info_changes):
    key, info = INFO[method]
    payload = {"payment_method": method, key: {**info, **info_changes}}
    if remark is not None:
        payload["remark"] = remark
    return payload


def create(client, headers, method="bank_transfer", **info_changes):
    response = client.post(URL, headers=headers, json=body(method, **info_changes))
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def raw_row(account_id):
    from crm_app.extensions import db

    db.session.rollback()
    return (
        db.session.execute(sa.text("SELECT * FROM payment_accounts WHERE id = :id"), {"id": account_id})
        .mappings()
        .one()
    )


# Happy paths ----------------------------------------------------------------------------------


def test_bank_account_is_created_and_read_back_in_the_seed_shape(client, headers):
    response = client.post(URL, headers=headers, json=body(remark="salary account"))
    assert response.status_code == 201, response.get_json()
    assert list(response.get_json()) == ["id"]
    account_id = response.get_json()["id"]

    one = client.get(f"{URL}/{account_id}", headers=headers)
    assert one.status_code == 200
    answer = one.get_json()
    assert set(answer) == {
        "account_holder_name",
        "bank_transfer_info",
        "created_at",
        "cryptocurrency_info",
        "id",
        "international_wire_info",
        "payment_method",
        "remark",
        "updated_at",
    }
    assert answer["payment_method"] == "bank_transfer" and answer["remark"] == "salary account"
    assert answer["account_holder_name"] == "Lin Wei"
    assert answer["bank_transfer_info"] == {
        "bank_country": "CN",
        "bank_name": "Bank of China",
        "bank_no": "6217860000012345678",
        "branch_name": "Shanghai Pudong",
        "bsc_code": "104290003",
    }
    assert answer["cryptocurrency_info"] is None and answer["international_wire_info"] is None
    datetime.strptime(answer["created_at"], "%Y-%m-%d %H:%M:%S")


def test_wire_and_crypto_accounts_are_created(client, headers):
    wire_id = create(client, headers, "international_wire_transfer")
    wire = client.get(f"{URL}/{wire_id}", headers=headers).get_json()["international_wire_info"]
    assert wire["swift_code"] == "NWBKGB2L" and wire["bank_no"] == "GB29NWBK60161331926819"
    for network, address in (
        ("TRC20", TRC20),
        ("ERC20", ERC20),
        ("BEP20", ERC20.lower()),
        ("BTC", "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"),
        ("BTC", "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2"),
        ("BTC", "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy"),
    ):
        account_id = create(client, headers, "cryptocurrency", network=network, wallet_address=address)
        crypto = client.get(f"{URL}/{account_id}", headers=headers).get_json()["cryptocurrency_info"]
        assert crypto == {"network": network, "wallet_address": address}


def test_holder_name_comes_from_the_kyc_identity(client, factory):
    from crm_app.extensions import db
    from crm_app.kyc.models import KycProfile

    user = factory.user(first_name="Nick", last_name="Name")
    db.session.add(KycProfile(user_id=user.id, data={"identity": {"country": "CN", "full_name": "Zhang San"}}))
    db.session.commit()
    headers = factory.headers(client, user)
    account_id = create(client, headers)
    assert client.get(f"{URL}/{account_id}", headers=headers).get_json()["account_holder_name"] == "Zhang San"


def test_list_is_grouped_by_method_with_the_default_first(client, headers):
    first_bank = create(client, headers)
    second_bank = create(client, headers, bank_no="12345678")
    wire = create(client, headers, "international_wire_transfer")
    crypto = create(client, headers, "cryptocurrency")
    listing = client.get(URL, headers=headers)
    assert listing.status_code == 200
    answer = listing.get_json()
    assert answer["total"] == 4
    assert [row["id"] for row in answer["bank_transfer"]] == [first_bank, second_bank]
    assert [row["is_default"] for row in answer["bank_transfer"]] == [True, False]
    assert set(answer["bank_transfer"][0]) == {
        "bank_country",
        "bank_name",
        "bank_no",
        "branch_name",
        "bsc_code",
        "created_at",
        "id",
        "is_default",
        "remark",
    }
    assert answer["bank_transfer"][1]["bank_no"] == "12345678"
    assert set(answer["international_wire_transfer"][0]) == {
        "bank_country",
        "bank_name",
        "bank_no",
        "beneficiary_address",
        "created_at",
        "id",
        "is_default",
        "remark",
        "swift_code",
    }
    assert answer["international_wire_transfer"][0]["id"] == wire
    assert set(answer["cryptocurrency"][0]) == {"created_at", "id", "is_default", "network", "remark", "wallet_address"}
    assert answer["cryptocurrency"][0]["id"] == crypto and answer["cryptocurrency"][0]["is_default"] is True

    only_crypto = client.get(f"{URL}?payment_method=cryptocurrency", headers=headers).get_json()
    assert only_crypto["total"] == 1 and only_crypto["bank_transfer"] == [] and len(only_crypto["cryptocurrency"]) == 1
    assert client.get(f"{URL}?payment_method=cash", headers=headers).status_code == 422


def test_list_filters_by_creation_time_in_the_brokers_timezone(client, headers, ctx):
    from crm_app.broker.services import update_setting
    from crm_app.extensions import db
    from crm_app.funding.models import PaymentAccount

    update_setting("broker", {"timezone": "Asia/Shanghai"})
    early, late = create(client, headers), create(client, headers, bank_no="12345678")
    # Stored as naive UTC: 2024-01-01 15:30 UTC is 23:30 in Shanghai, 16:30 UTC is 00:30 next day.
    db.session.execute(
        sa.update(PaymentAccount).where(PaymentAccount.id == early).values(created_at=datetime(2024, 1, 1, 15, 30))
    )
    db.session.execute(
        sa.update(PaymentAccount).where(PaymentAccount.id == late).values(created_at=datetime(2024, 1, 1, 16, 30))
    )
    db.session.commit()

    def ids(query):
        response = client.get(f"{URL}?{query}", headers=headers)
        assert response.status_code == 200, response.get_json()
        return [row["id"] for row in response.get_json()["bank_transfer"]]

    assert ids("end_time=2024-01-01 23:59:59") == [early]
    assert ids("start_time=2024-01-02 00:00:00") == [late]
    assert sorted(ids("start_time=2024-01-01 00:00:00&end_time=2024-01-02 23:59:59")) == [early, late]
    listed = client.get(URL, headers=headers).get_json()["bank_transfer"]
    assert {row["created_at"] for row in listed} == {"2024-01-01 23:30:00", "2024-01-02 00:30:00"}
    # A date alone is a whole day: from its start, to its end.
    assert ids("start_time=2024-01-02") == [late]
    assert ids("end_time=2024-01-01") == [early]
    assert client.get(f"{URL}?start_time=2024-01-01T00:00", headers=headers).status_code == 422


def test_update_changes_only_what_is_sent(client, headers):
    account_id = create(client, headers, remark="old")
    response = client.put(
        f"{URL}/{account_id}",
        headers=headers,
        json={"id": account_id, "bank_transfer_info": {"bank_name": "ICBC"}, "remark": "new"},
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {}
    info = client.get(f"{URL}/{account_id}", headers=headers).get_json()
    assert info["remark"] == "new"
    assert info["bank_transfer_info"]["bank_name"] == "ICBC"
    assert info["bank_transfer_info"]["bank_no"] == "6217860000012345678"
    assert info["bank_transfer_info"]["branch_name"] == "Shanghai Pudong"

    changed_no = client.put(
        f"{URL}/{account_id}", headers=headers, json={"bank_transfer_info": {"bank_no": "99887766"}}
    )
    assert changed_no.status_code == 200
    assert client.get(f"{URL}/{account_id}", headers=headers).get_json()["bank_transfer_info"]["bank_no"] == "99887766"


def test_update_leaves_fields_sent_blank_as_they_are(client, headers):
    """A required field sent "" or null (once refused) and an optional one sent "" are
    unchanged: the seed's form sends every field, filled in or not."""
    account_id = create(client, headers, remark="old")
    before = client.get(f"{URL}/{account_id}", headers=headers).get_json()["bank_transfer_info"]
    for blank in ("", None, "  "):
        response = client.put(
            f"{URL}/{account_id}",
            headers=headers,
            json={"bank_transfer_info": {"bank_name": blank, "bank_no": blank, "branch_name": blank}},
        )
        assert response.status_code == 200, response.get_json()
        assert client.get(f"{URL}/{account_id}", headers=headers).get_json()["bank_transfer_info"] == before


def test_crypto_update_checks_the_address_against_the_resulting_network(client, headers):
    account_id = create(client, headers, "cryptocurrency")
    # A TRC20 address is not an ERC20 one: changing the network alone is refused.
    response = client.put(f"{URL}/{account_id}", headers=headers, json={"cryptocurrency_info": {"network": "ERC20"}})
    assert response.status_code == 422
    assert "wallet_address" in response.get_json()["errors"]["cryptocurrency_info"]
    both = client.put(
        f"{URL}/{account_id}",
        headers=headers,
        json={"cryptocurrency_info": {"network": "ERC20", "wallet_address": ERC20}},
    )
    assert both.status_code == 200, both.get_json()
    assert client.get(f"{URL}/{account_id}", headers=headers).get_json()["cryptocurrency_info"] == {
        "network": "ERC20",
        "wallet_address": ERC20,
    }


# Defaults ---------------------------------------------------------------------------------------


def defaults(client, headers, method="bank_transfer"):
    return [row["id"] for row in client.get(URL, headers=headers).get_json()[method] if row["is_default"]]


def test_first_account_of_each_method_is_the_default_and_is_default_moves_it(client, headers):
    first, second, third = create(client, headers), create(client, headers), create(client, headers)
    crypto = create(client, headers, "cryptocurrency")
    assert defaults(client, headers) == [first]
    assert defaults(client, headers, "cryptocurrency") == [crypto]

    assert client.put(f"{URL}/{third}", headers=headers, json={"is_default": True}).status_code == 200
    assert defaults(client, headers) == [third]
    assert defaults(client, headers, "cryptocurrency") == [crypto], "another method's default stays"

    # Absent or null: unchanged; false: no default left.
    assert client.put(f"{URL}/{third}", headers=headers, json={"remark": "x"}).status_code == 200
    assert client.put(f"{URL}/{third}", headers=headers, json={"is_default": None}).status_code == 200
    assert defaults(client, headers) == [third]
    assert client.put(f"{URL}/{third}", headers=headers, json={"is_default": False}).status_code == 200
    assert defaults(client, headers) == []
    assert client.put(f"{URL}/{second}", headers=headers, json={"is_default": True}).status_code == 200
    assert defaults(client, headers) == [second]


def test_the_database_refuses_a_second_default(user, ctx, client, headers):
    from sqlalchemy.exc import IntegrityError

    from crm_app.extensions import db
    from crm_app.funding.models import PaymentAccount

    create(client, headers)
    db.session.add(PaymentAccount(user_id=user.id, payment_method="bank_transfer", is_default=True))
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()
    # Non-default rows and other methods' defaults are fine.
    db.session.add(PaymentAccount(user_id=user.id, payment_method="bank_transfer", is_default=False))
    db.session.add(PaymentAccount(user_id=user.id, payment_method="cryptocurrency", is_default=True))
    db.session.commit()


def test_concurrent_creates_leave_exactly_one_default(app, client, headers, ctx):
    from crm_app.extensions import db

    assert db.engine.dialect.name == "postgresql"
    statuses, barrier = [], threading.Barrier(6)

    def add(index):
        own_client = app.test_client()
        barrier.wait()
        response = own_client.post(URL, headers=headers, json=body(bank_no=f"1000000{index}"))
        statuses.append(response.status_code)

    threads = [threading.Thread(target=add, args=(index,)) for index in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [201] * 6
    listing = client.get(URL, headers=headers).get_json()
    assert listing["total"] == 6
    assert len(defaults(client, headers)) == 1


def test_concurrent_moves_of_the_default_leave_exactly_one(app, client, headers):
    ids = [create(client, headers, bank_no=f"2000000{index}") for index in range(5)]
    statuses, barrier = [], threading.Barrier(len(ids))

    def move(account_id):
        own_client = app.test_client()
        barrier.wait()
        statuses.append(own_client.put(f"{URL}/{account_id}", headers=headers, json={"is_default": True}).status_code)

    threads = [threading.Thread(target=move, args=(account_id,)) for account_id in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * len(ids)
    assert len(defaults(client, headers)) == 1


# Secrets ------------------------------------------------------------------------------------------


def test_bank_numbers_and_wallet_addresses_are_encrypted_at_rest(client, headers, ctx):
    from crm_app.common import crypto
    from crm_app.funding.services import SECRET_PURPOSE

    bank_id = create(client, headers)
    wallet_id = create(client, headers, "cryptocurrency")
    bank_row, wallet_row = raw_row(bank_id), raw_row(wallet_id)
    for row, secret in ((bank_row, "6217860000012345678"), (wallet_row, TRC20)):
        stored = " ".join(str(value) for value in row.values())
        assert secret not in stored and secret[-8:] not in stored
    assert crypto.decrypt(bank_row["bank_no_encrypted"], SECRET_PURPOSE) == "6217860000012345678"
    assert crypto.decrypt(wallet_row["wallet_address_encrypted"], SECRET_PURPOSE) == TRC20
    # Plain details stay plain (they are what an admin may search on).
    assert bank_row["bank_name"] == "Bank of China" and wallet_row["network"] == "TRC20"
    # Another purpose's key cannot read them.
    with pytest.raises(ValueError):
        crypto.decrypt(bank_row["bank_no_encrypted"], "trading-password")


def test_audit_log_records_every_change_without_the_secrets(client, factory, headers):
    account_id = create(client, headers)
    client.put(f"{URL}/{account_id}", headers=headers, json={"bank_transfer_info": {"bank_no": "55556666"}})
    admin_headers = factory.headers(client, factory.admin())
    logs = client.get("/api/v1/admin/audit-logs?target_type=payment_account", headers=admin_headers).get_json()
    assert sorted(row["action"] for row in logs["list"]) == ["payment_account.create", "payment_account.update"]
    text = str(logs)
    assert "6217860000012345678" not in text and "55556666" not in text
    update = next(row for row in logs["list"] if row["action"] == "payment_account.update")
    assert update["details"]["fields"] == ["bank_transfer_info.bank_no"]


def test_other_users_account_is_404_for_read_and_update(client, factory, headers):
    account_id = create(client, headers)
    other = factory.headers(client, factory.user())
    assert client.get(f"{URL}/{account_id}", headers=other).status_code == 404
    response = client.put(f"{URL}/{account_id}", headers=other, json={"id": account_id, "is_default": False})
    assert response.status_code == 404
    assert client.put(f"{URL}/{account_id}", headers=other, json={"remark": "mine now"}).status_code == 404
    assert client.get(URL, headers=other).get_json()["total"] == 0
    assert client.get(f"{URL}/999999", headers=headers).status_code == 404
    # Nothing changed for the owner.
    assert client.get(f"{URL}/{account_id}", headers=headers).get_json()["remark"] == ""


def test_get_owned_payment_account_decrypts_for_the_owner_only(client, factory, headers, user, ctx):
    from crm_app.common.errors import NotFound
    from crm_app.funding.services import get_owned_payment_account

    bank_id = create(client, headers)
    wallet_id = create(client, headers, "cryptocurrency")
    details = get_owned_payment_account(user.id, bank_id)
    assert details.payment_method == "bank_transfer" and details.info_key == "bank_transfer_info"
    assert details.is_default is True
    assert details.info == {
        "account_holder_name": "Lin Wei",
        "bank_country": "CN",
        "bank_name": "Bank of China",
        "bank_no": "6217860000012345678",
        "branch_name": "Shanghai Pudong",
        "bsc_code": "104290003",
    }
    assert get_owned_payment_account(user.id, wallet_id).info == CRYPTO
    with pytest.raises(NotFound):
        get_owned_payment_account(factory.user().id, bank_id)


def test_body_id_that_differs_from_the_path_is_422(client, headers):
    account_id = create(client, headers)
    response = client.put(f"{URL}/{account_id}", headers=headers, json={"id": account_id + 1, "remark": "x"})
    assert response.status_code == 422
    assert list(response.get_json()["errors"]) == ["id"]
    assert client.get(f"{URL}/{account_id}", headers=headers).get_json()["remark"] == ""


# Bad input ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "field", "value"),
    [
        ("bank_transfer", "bank_no", "123"),
        ("bank_transfer", "bank_no", "1" * 35),
        ("bank_transfer", "bank_no", "12345678#"),
        ("bank_transfer", "bank_no", 12345678),
        ("bank_transfer", "bank_country", "XX"),
        ("bank_transfer", "bank_country", "ZZZ"),  # alpha-3 codes and English names are read; this is neither
        ("bank_transfer", "bank_country", "Atlantis"),
        ("bank_transfer", "bank_name", ""),
        ("bank_transfer", "bsc_code", "12$34"),
        ("bank_transfer", "branch_name", "b" * 129),
        ("bank_transfer", "swift_code", "NWBKGB2L"),  # not a bank transfer field
        ("international_wire_transfer", "swift_code", "NWBKGB2"),
        ("international_wire_transfer", "swift_code", "NWBKXX2L"),
        ("international_wire_transfer", "swift_code", "NWBKGB2L1"),
        ("international_wire_transfer", "beneficiary_address", ""),
        ("international_wire_transfer", "bank_no", "GB29-NWBK-6016-1331-9268-19-EXTRA-CHARACTERS"),
        ("cryptocurrency", "network", "DOGE"),
        ("cryptocurrency", "wallet_address", "T" + "1" * 20),
        ("cryptocurrency", "wallet_address", "TMASi45ub7Qe4ZE36UT5G6cU4ud8Fhhe4O"),  # O is not base58
        ("cryptocurrency", "wallet_address", ERC20),  # an ERC20 address on TRC20
        ("cryptocurrency", "wallet_address", ""),
    ],
)
def test_bad_info_field_is_422_naming_it(client, headers, method, field, value):
    key = INFO[method][0]
    response = client.post(URL, headers=headers, json=body(method, **{field: value}))
    assert response.status_code == 422, response.get_json()
    assert field in response.get_json()["errors"][key]
    assert client.get(URL, headers=headers).get_json()["total"] == 0


@pytest.mark.parametrize(
    ("network", "address"),
    [
        ("ERC20", "0x12345"),
        ("ERC20", "52908400098527886E0F7030069857D2E4169EE7"),
        ("ERC20", "0x52908400098527886E0F7030069857D2E4169EEG"),
        ("BTC", "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdb"),  # b is not bech32
        ("BTC", "2BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2"),
        ("BTC", TRC20),
    ],
)
def test_wallet_address_must_fit_the_network(client, headers, network, address):
    response = client.post(URL, headers=headers, json=body("cryptocurrency", network=network, wallet_address=address))
    assert response.status_code == 422
    assert "wallet_address" in response.get_json()["errors"]["cryptocurrency_info"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"payment_method": "bank_transfer"}, "bank_transfer_info"),
        ({"payment_method": "cheque", "bank_transfer_info": BANK}, "payment_method"),
        ({"bank_transfer_info": BANK}, "payment_method"),
        ({**body(), "cryptocurrency_info": CRYPTO}, "cryptocurrency_info"),
        ({**body(), "international_wire_info": WIRE}, "international_wire_info"),
        ({"payment_method": "cryptocurrency", "bank_transfer_info": BANK}, "cryptocurrency_info"),
        ({**body(), "remark": "r" * 256}, "remark"),
        ({**body(), "is_default": True}, "is_default"),
        ({**body(), "user_id": 1}, "user_id"),
    ],
)
def test_bad_create_body_is_422_naming_the_field(client, headers, payload, field):
    response = client.post(URL, headers=headers, json=payload)
    assert response.status_code == 422, response.get_json()
    assert field in response.get_json()["errors"]


def test_null_info_objects_of_other_methods_are_ignored(client, headers):
    payload = {**body(), "cryptocurrency_info": None, "international_wire_info": None}
    assert client.post(URL, headers=headers, json=payload).status_code == 201


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"cryptocurrency_info": CRYPTO}, "cryptocurrency_info"),  # a bank account
        ({"international_wire_info": {"swift_code": "NWBKGB2L"}}, "international_wire_info"),
        ({"bank_transfer_info": {"bank_no": "12"}}, "bank_transfer_info"),
        # A field left blank is unchanged (see below), but what is filled in is still checked.
        ({"bank_transfer_info": {"bank_name": "", "bank_no": "12"}}, "bank_transfer_info"),
        ({"bank_transfer_info": {"bank_name": None, "bank_country": "Atlantis"}}, "bank_transfer_info"),
        ({"bank_transfer_info": {"iban": "x"}}, "bank_transfer_info"),
        ({"is_default": "maybe"}, "is_default"),
        ({"id": "abc"}, "id"),
        ({"payment_method": "cryptocurrency"}, "payment_method"),
    ],
)
def test_bad_update_body_is_422_naming_the_field(client, headers, payload, field):
    account_id = create(client, headers)
    response = client.put(f"{URL}/{account_id}", headers=headers, json=payload)
    assert response.status_code == 422, response.get_json()
    assert field in response.get_json()["errors"]


# Access and idempotency ------------------------------------------------------------------------------


def test_routes_need_a_token_and_a_client(client, factory, headers):
    account_id = create(client, headers)
    for method, path in (("get", URL), ("post", URL), ("get", f"{URL}/{account_id}"), ("put", f"{URL}/{account_id}")):
        assert getattr(client, method)(path, json={} if method in ("post", "put") else None).status_code == 401
        bad = getattr(client, method)(path, headers={"Authorization": "Bearer nonsense"})
        assert bad.status_code == 401
    admin_headers = factory.headers(client, factory.admin())
    assert client.get(URL, headers=admin_headers).status_code == 403
    assert client.get(f"{URL}/{account_id}", headers=admin_headers).status_code == 403
    assert client.post(URL, headers=admin_headers, json=body()).status_code == 403
    # An IB is also a client.
    ib_headers = factory.headers(client, factory.ib())
    assert client.post(URL, headers=ib_headers, json=body()).status_code == 201


def test_idempotency_key_replays_the_first_answer(client, headers):
    first = client.post(URL, headers={**headers, "Idempotency-Key": "pa-1"}, json=body())
    again = client.post(URL, headers={**headers, "Idempotency-Key": "pa-1"}, json=body())
    assert first.status_code == again.status_code == 201
    assert first.get_json() == again.get_json()
    other_body = client.post(URL, headers={**headers, "Idempotency-Key": "pa-1"}, json=body(bank_no="12345678"))
    assert other_body.status_code == 409
    assert client.get(URL, headers=headers).get_json()["total"] == 1
