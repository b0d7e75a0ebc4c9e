"""An export's body takes the list's filters as a portal copies them from its list form:
every optional filter sent `""` or `null` is no filter, as the same blanks are in the
list's query string, and the file has the rows of the unfiltered list. Required fields
stay required."""

import pytest

from tests.test_browser_habits import openapi
from tests.test_reports_exports import download, export_and_compare, listed_cells, money, trading  # noqa: F401
from tests.test_reports_money import tree  # noqa: F401 - the `money` fixture's tree
from tests.test_reports_trading import traders  # noqa: F401 - the `trading` fixture's traders

BLANKS = ("", None)

# Each report's required fields, with the values that filter nothing out.
REQUIRED = {
    "withdrawals": {"status": "all", "method": "all"},
    "deposits": {"status": "all"},
    "transfers": {"status": "all"},
    "history-orders": {"trading_type": "all"},
    "positions": {"trading_type": "all"},
    "pending-orders": {"trading_type": "all"},
}
IB_EXPORTS = {  # tested in test_ib_export_blank_filters (their fixtures are others)
    "/api/v1/ib/commissions/details/export": "/api/v1/ib/commissions/details",
    "/api/v1/ib/commissions/export": "/api/v1/ib/commissions",
}


def body_fields(client, path):
    """The export body's fields as the document shows them: (optional, required)."""
    document = openapi(client)
    schema = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    required = set(schema.get("required", ()))
    return sorted(set(schema["properties"]) - required), required


def test_every_export_route_is_covered(client):
    export_paths = {path for path in openapi(client)["paths"] if path.endswith("/export")}
    assert export_paths == {f"/api/v1/reports/{name}/export" for name in REQUIRED} | set(IB_EXPORTS)


def blank_body(client, path, required_values, blank):
    optional, required = body_fields(client, path)
    assert required == set(required_values), "the test sends every required field, and only those"
    assert {"start_time", "end_time", "format"} <= set(optional)
    return {**required_values, **dict.fromkeys(optional, blank)}


@pytest.mark.parametrize("blank", BLANKS, ids=["empty", "null"])
@pytest.mark.parametrize("report", ["withdrawals", "deposits", "transfers"])
def test_money_report_exports_read_blank_filters_as_no_filter(client, money, run_jobs, report, blank):  # noqa: F811
    headers = money["admin"][1]
    body = blank_body(client, f"/api/v1/reports/{report}/export", REQUIRED[report], blank)
    assert body["format"] == blank  # a blank format is the default, CSV
    expected = export_and_compare(client, run_jobs, headers, report, body, "csv")
    assert expected and expected == listed_cells(client, headers, report, REQUIRED[report])


@pytest.mark.parametrize("blank", BLANKS, ids=["empty", "null"])
@pytest.mark.parametrize("report", ["history-orders", "positions", "pending-orders"])
def test_trading_report_exports_read_blank_filters_as_no_filter(client, trading, run_jobs, report, blank):  # noqa: F811
    headers = trading["headers"]["admin"]
    path = f"/api/v1/reports/{report}/export"
    body = blank_body(client, path, REQUIRED[report], blank)
    assert {"server_id", "trading_account_id", "account", "symbol", "order_number"} <= set(body)
    answer = client.post(path, headers=headers, json=body)
    assert answer.status_code == 200, answer.get_json()
    file_rows = download(client, run_jobs, answer.get_json()["download_url"]).data.decode("utf-8-sig").splitlines()
    expected = listed_cells(client, headers, report, REQUIRED[report])
    assert expected and len(file_rows) == len(expected) + 1
    # The same blanks in the list's query string filter nothing either.
    query = {**REQUIRED[report], **{key: "" for key in body if key not in REQUIRED[report]}}
    assert listed_cells(client, headers, report, query) == expected


def test_the_outside_clients_history_orders_body_is_accepted(client, trading, run_jobs):  # noqa: F811
    """The body that was refused: ids sent empty, then null, as the list form holds them."""
    headers = trading["headers"]["admin"]
    everything = listed_cells(client, headers, "history-orders", {"trading_type": "all"})
    for blank in BLANKS:
        body = {"trading_type": "all", "server_id": blank, "trading_account_id": blank, "format": "csv"}
        assert export_and_compare(client, run_jobs, headers, "history-orders", body, "csv") == everything
    # The seed's placeholder 0 is no filter too.
    body = {"trading_type": "all", "server_id": 0, "trading_account_id": 0}
    assert export_and_compare(client, run_jobs, headers, "history-orders", body, "csv") == everything


@pytest.mark.parametrize("blank", BLANKS, ids=["empty", "null"])
def test_a_required_field_sent_blank_is_still_refused(client, money, blank):  # noqa: F811
    answer = client.post("/api/v1/reports/deposits/export", headers=money["admin"][1], json={"status": blank})
    assert answer.status_code == 422
    assert answer.get_json()["code"] == "validation_error" and "status" in answer.get_json()["errors"]


def test_the_document_shows_optional_export_filters_as_nullable(client):
    for path in [f"/api/v1/reports/{name}/export" for name in REQUIRED] + sorted(IB_EXPORTS):
        document = openapi(client)
        ref = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        schema = document["components"]["schemas"][ref.rsplit("/", 1)[-1]]
        for name, field in schema["properties"].items():
            assert field.get("nullable") is (None if name in schema.get("required", ()) else True), (path, name)
