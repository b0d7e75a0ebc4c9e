"""Odd input is refused in the one error shape, naming the field; never a 500.

NUL characters (PostgreSQL refuses them in text), lone surrogates (no UTF-8 form),
digits that are not ASCII (`²`, `١٠٠`, `１００`: Python's int() and Decimal() read them),
and integers too long for Python to parse (more than 4,300 digits).
"""

import pytest

from tests.support.trading import open_demo

HUGE = "9" * 5000


def error_of(response, status=422):
    body = response.get_json()
    assert response.status_code == status, (response.status_code, body)
    assert set(body) == {"code", "status", "message", "errors"}, body
    assert body["status"] == status
    return body


@pytest.fixture
def signed_in(client, factory):
    user = factory.user()
    return factory.headers(client, user)


# Query strings ----------------------------------------------------------------------------

TRADING_REPORTS = ["history-orders", "positions", "pending-orders"]


@pytest.mark.parametrize("report", TRADING_REPORTS)
@pytest.mark.parametrize("name", ["account", "order_number"])
@pytest.mark.parametrize("value", ["²", "١٠٠", "１００", "12a"])
def test_a_trading_report_filter_of_digits_takes_ascii_digits_only(client, signed_in, report, name, value):
    """`account=²` made the service call int("²") (str.isdigit() is true for it): a 500."""
    response = client.get(f"/api/v1/reports/{report}?trading_type=all&{name}={value}", headers=signed_in)
    assert name in error_of(response)["errors"]


@pytest.mark.parametrize("report", TRADING_REPORTS)
def test_a_trading_report_filter_of_ascii_digits_still_works(client, signed_in, report):
    response = client.get(
        f"/api/v1/reports/{report}?trading_type=all&account=5900001&order_number=42", headers=signed_in
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["total"] == 0
    # An empty filter is no filter (forms send empty fields).
    response = client.get(f"/api/v1/reports/{report}?trading_type=all&account=&order_number=", headers=signed_in)
    assert response.status_code == 200, response.get_json()


@pytest.mark.parametrize(
    "query",
    [
        "/api/v1/reports/transfers?status=all&order_number=%00",
        "/api/v1/reports/history-orders?trading_type=all&symbol=%00",
        "/api/v1/reports/positions?trading_type=all&symbol=EUR%00USD",
        "/api/v1/reports/deposits?status=all&start_time=2024-01-01%2000:00:00%00",
        "/api/v1/client/trading-accounts?is_demo=%00",
        "/api/v1/client/transfers?start_time=%00",
    ],
)
def test_a_nul_character_in_a_list_filter_is_422_naming_the_filter(client, signed_in, query):
    name = query.split("&")[-1].split("?")[-1].split("=")[0]
    assert name in error_of(client.get(query, headers=signed_in))["errors"]


@pytest.mark.parametrize(
    "query",
    ["/api/v1/client/trading-accounts?currency=%00", "/api/v1/client/transfers?order_number=%00"],
)
def test_a_nul_character_in_a_query_key_the_route_does_not_read_is_ignored(client, signed_in, query):
    """Only values a route uses are checked: an undeclared query key is ignored, whatever it holds."""
    response = client.get(query, headers=signed_in)
    assert response.status_code == 200, response.get_json()


def test_a_lone_surrogate_in_a_query_string_is_no_500(client, signed_in):
    """A browser cannot send one (it has no UTF-8 form); its bytes decode to U+FFFD."""
    response = client.get("/api/v1/reports/transfers?status=all&order_number=%ED%A0%80", headers=signed_in)
    assert response.status_code == 200, response.get_json()


@pytest.mark.parametrize("value", ["١", "１", "²", " 1", "1_0", "+1"])
def test_an_integer_query_argument_takes_ascii_digits_only(client, signed_in, value):
    """marshmallow's Integer calls int(), which reads `١` as 1 and `1_0` as 10."""
    response = client.get("/api/v1/client/transfers", headers=signed_in, query_string={"page": value})
    assert "page" in error_of(response)["errors"]


@pytest.mark.parametrize("digits", ["١", "１", "²"])
def test_an_id_in_a_path_takes_ascii_digits_only(client, factory, book, digits):
    """werkzeug's `int` converter matches `\\d+` and calls int(): `/trading-accounts/１` was account 1."""
    user = factory.user()
    headers = factory.headers(client, user)
    account_id = open_demo(client, headers, book).get_json()["id"]
    assert account_id == 1
    assert client.get("/api/v1/client/trading-accounts/1", headers=headers).status_code == 200
    error_of(client.get(f"/api/v1/client/trading-accounts/{digits}", headers=headers), 404)


def test_a_nul_character_in_a_path_parameter_is_404(client, signed_in):
    response = client.get("/api/v1/uploads/abc%00def", headers=signed_in)
    error_of(response, 404)
    response = client.get("/api/v1/exports/abc%00def", headers=signed_in)
    error_of(response, 404)


# JSON bodies ------------------------------------------------------------------------------


@pytest.fixture
def depositor(client, factory, book):
    user = factory.user()
    headers = factory.headers(client, user)
    return {"headers": headers, "account": open_demo(client, headers, book).get_json()["id"]}


def deposit(client, depositor, headers_extra=None, **fields):
    body = {"deposit_amount": "100.00", "remittance_id": 1, "trading_account_id": depositor["account"], **fields}
    headers = {**depositor["headers"], **(headers_extra or {})}
    return client.post("/api/v1/client/deposits", headers=headers, json=body)


def test_a_nul_character_in_a_json_string_is_422_naming_the_field(client, depositor):
    body = error_of(deposit(client, depositor, remark="from my\u0000 bank"))
    assert "remark" in body["errors"], body


def test_a_nul_character_in_a_nested_json_string_is_422_naming_the_nested_field(client, signed_in):
    response = client.post(
        "/api/v1/client/payment-accounts",
        headers=signed_in,
        json={
            "payment_method": "bank_transfer",
            "bank_transfer_info": {
                "bank_country": "GB",
                "bank_name": "Demo\u0000 Bank",
                "bank_no": "GB33BUKB20201555555555",
                "branch_name": "City",
                "bsc_code": "20-20-15",
            },
        },
    )
    errors = error_of(response)["errors"]
    assert "bank_name" in errors["bank_transfer_info"], errors


def test_a_nul_character_in_a_json_key_or_a_free_form_object_is_422(client, signed_in):
    response = client.put(
        "/api/v1/client/kyc",
        headers=signed_in,
        json={
            "current_module": "identity",
            "kyc_data": {"identity": {"first_name\u0000": "x", "last_name": "a\u0000b"}},
        },
    )
    assert "kyc_data" in error_of(response)["errors"]


def test_a_nul_character_in_a_login_email_is_422(client):
    response = client.post("/api/v1/auth/login", json={"email": "a\u0000@example.test", "password": "x"})
    assert "email" in error_of(response)["errors"]


def raw_json(client, path, headers, text):
    return client.post(path, headers={**headers, "Content-Type": "application/json"}, data=text)


def test_an_integer_of_more_than_4300_digits_is_refused_naming_the_field(client, depositor):
    text = f'{{"deposit_amount": "100.00", "remittance_id": {HUGE}, "trading_account_id": {depositor["account"]}}}'
    body = error_of(raw_json(client, "/api/v1/client/deposits", depositor["headers"], text))
    assert "remittance_id" in body["errors"], body


def test_a_huge_integer_deep_in_a_body_names_its_path(client, signed_in):
    text = f'{{"current_module": "identity", "kyc_data": {{"identity": {{"age": [1, {HUGE}]}}}}}}'
    response = client.put("/api/v1/client/kyc", headers={**signed_in, "Content-Type": "application/json"}, data=text)
    body = error_of(response)
    assert "kyc_data" in body["errors"], body


def test_a_huge_integer_in_a_public_route_body_is_refused(client):
    text = f'{{"email": "a@example.test", "password": {HUGE}}}'
    body = error_of(raw_json(client, "/api/v1/auth/login", {}, text))
    assert "password" in body["errors"], body


def test_a_lone_surrogate_in_a_json_string_is_refused_naming_the_field(client, depositor):
    account = depositor["account"]
    text = f'{{"deposit_amount": "100.00", "remittance_id": 1, "trading_account_id": {account}, "remark": "\\ud800"}}'
    body = error_of(raw_json(client, "/api/v1/client/deposits", depositor["headers"], text))
    assert "remark" in body["errors"], body


def test_a_nan_or_infinity_in_a_json_body_is_refused(client, signed_in):
    """Python's reader takes `NaN` and `1e999` (infinity); JSON has neither, no column stores them."""
    text = '{"current_module": "identity", "kyc_data": {"identity": {"age": NaN}}}'
    response = client.put("/api/v1/client/kyc", headers={**signed_in, "Content-Type": "application/json"}, data=text)
    error_of(response, 400)
    text = '{"current_module": "identity", "kyc_data": {"identity": {"age": 1e999}}}'
    response = client.put("/api/v1/client/kyc", headers={**signed_in, "Content-Type": "application/json"}, data=text)
    assert error_of(response)["errors"] == {"kyc_data": {"identity": {"age": ["Number out of range."]}}}


# Money ------------------------------------------------------------------------------------


@pytest.mark.parametrize("amount", ["١٠٠", "１００", "۱۰۰", "100.٥", "１００.00", "²"])
def test_money_takes_ascii_digits_only(client, depositor, amount):
    """`"deposit_amount": "١٠٠"` was read as 100 (the pattern's \\d and Decimal() take any digit)."""
    body = error_of(deposit(client, depositor, deposit_amount=amount))
    assert "deposit_amount" in body["errors"], body


def test_money_of_ascii_digits_still_passes_the_schema(client, depositor):
    response = deposit(client, depositor, deposit_amount="100.00", remittance_id=987654)
    assert "deposit_amount" not in (response.get_json().get("errors") or {}), response.get_json()


@pytest.mark.parametrize("value", ["２０２４-01-01 00:00:00", "2024-01-01 ٠٠:00:00"])
def test_a_time_takes_ascii_digits_only(client, signed_in, value):
    response = client.get(
        "/api/v1/reports/deposits", headers=signed_in, query_string={"status": "all", "start_time": value}
    )
    assert "start_time" in error_of(response)["errors"]


def test_a_body_on_a_route_that_takes_none_is_refused_even_with_a_huge_integer(client, signed_in):
    """The unknown key is named though Python cannot read the number."""
    response = client.get(
        "/api/v1/client/kyc", headers={**signed_in, "Content-Type": "application/json"}, data=f'{{"n": {HUGE}}}'
    )
    assert error_of(response)["errors"] == {"n": ["Unknown field."]}
    deep = "[" * 100_000 + "]" * 100_000
    response = client.get("/api/v1/client/kyc", headers={**signed_in, "Content-Type": "application/json"}, data=deep)
    assert response.status_code < 500


@pytest.mark.parametrize("key", ["a\x00b", "١٢٣"])
def test_an_odd_idempotency_key_is_no_500(client, depositor, key):
    response = deposit(client, depositor, headers_extra={"Idempotency-Key": key})
    assert response.status_code < 500, response.get_json()


@pytest.mark.parametrize("depth", [900, 990, 5000])
def test_a_deeply_nested_body_is_a_4xx(client, signed_in, depth):
    text = '{"current_module": "identity", "kyc_data": ' + "[" * depth + "]" * depth + "}"
    response = client.put("/api/v1/client/kyc", headers={**signed_in, "Content-Type": "application/json"}, data=text)
    assert 400 <= response.status_code < 500
