"""One trade, numbers a portal can link: each rebate (#52) and commission detail (#57) row
names the position (`position_number`) and the closing deal (`order_number`) the closed
orders report (#38) shows as `order_number` and `deal_number`, and #38's `order_number`
filter finds the row by either."""

from crm_app.rebates import services as rebates
from tests.test_rebates import LONG_AGO
from tests.test_reports_trading import traders  # noqa: F401 - the `traders` fixture

HISTORY = "/api/v1/reports/history-orders?page=1&size=20&trading_type=all"


def get(client, headers, path):
    response = client.get(path, headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_rebate_and_commission_rows_link_to_their_closed_order(client, traders):  # noqa: F811
    admin, ib = traders["headers"]["admin"], traders["headers"]["ib"]
    body = {"symbol_pattern": "*", "mode": "per_lot", "level_amounts": ["8.00"], "valid_from": LONG_AGO}
    created = client.post("/api/v1/admin/rebate-rules", headers=admin, json=body)
    assert created.status_code == 201, created.get_json()
    rebates.calculate_rebates()

    history = get(client, ib, HISTORY)["list"]
    assert len(history) == 2  # carol's two closed trades
    by_deal = {row["deal_number"]: row for row in history}
    assert all(row["deal_number"] != row["order_number"] for row in history)

    details = get(client, ib, "/api/v1/ib/commissions/details?page=1&size=20")["list"]
    records = get(client, ib, "/api/v1/ib/rebates?page=1&size=20")["list"]
    assert len(details) == len(records) == 2
    for row in details + records:
        closed = by_deal[row["order_number"]]  # the closing deal, as #38's deal_number
        assert row["position_number"] == closed["order_number"]  # the position, as #38's order_number
        assert row["symbol"] == closed["symbol"]
        for ticket in (row["position_number"], row["order_number"]):
            found = get(client, ib, f"{HISTORY}&order_number={ticket}")["list"]
            assert [item["deal_number"] for item in found] == [closed["deal_number"]]


def test_the_ticket_fields_say_which_ticket_they_are(client):
    spec = client.get("/api/v1/openapi.json").get_json()["components"]["schemas"]
    history = spec["HistoryOrderRow"]["properties"]
    assert "position" in history["order_number"]["description"]
    assert "closing deal" in history["deal_number"]["description"]
    for name in ("CommissionDetail", "RebateRecord"):
        fields = spec[name]["properties"]
        assert "closing order" in fields["mt_order_number"]["description"]
        assert "closing deal" in fields["order_number"]["description"]
        assert "position" in fields["position_number"]["description"]
