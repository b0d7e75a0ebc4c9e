"""A front end's query strings are written by browsers and libraries, not by hand.

Caches add `_t=` (a cache-buster), axios writes an array as `type[]=a&type[]=b`, forms
send their empty fields (`start_time=&end_time=&account=`), and date pickers send a
date alone (`2026-03-10`, as the seed's #56/#57 do). Each is read as meant: an unknown
query key is ignored, an empty optional filter is no filter, an array is read in every
common spelling, and a date alone is a whole day in the broker's timezone. Bodies stay
strict: an unknown body field is still refused.

The first test walks every GET operation of the app's own OpenAPI document, as each
role it admits, so a new route gets the same check.
"""

import re
from datetime import timedelta
from urllib.parse import quote

import pytest
from sqlalchemy import select, update

from crm_app.common.timeutil import utcnow
from crm_app.extensions import db
from crm_app.rebates import services as rebates
from crm_app.rebates.models import Rebate
from tests.support.trading import add_live_type, open_demo, open_live
from tests.test_rebates import account_for, closed, rule

ROLES = ("client", "ib", "admin")


def openapi(client):
    document = client.get("/api/v1/openapi.json").get_json()
    assert document and "paths" in document
    return document


def get_operations(document):
    for path, operations in sorted(document["paths"].items()):
        if "get" in operations:
            yield path, operations["get"]


def sample(schema):
    """A value the parameter's schema takes (the first of an enum)."""
    if schema.get("type") == "array":
        return sample(schema.get("items", {}))
    if "enum" in schema:
        return str(schema["enum"][0])
    if schema.get("type") == "integer":
        return "1"
    if schema.get("type") == "boolean":
        return "true"
    return str(schema.get("example", "x"))


def query_string(pairs):
    return "&".join(f"{quote(key)}={quote(value)}" for key, value in pairs)


@pytest.fixture
def world(client, factory, book):
    """A client (KYC approved, one demo account), its IB and the book's admin."""
    ib = factory.ib(first_name="Ivan")
    client_user = factory.user(parent=ib, first_name="Cleo")
    factory.approved_kyc(client_user)
    headers = {
        "client": factory.headers(client, client_user),
        "ib": factory.headers(client, ib),
        "admin": book["admin_headers"],
    }
    account = open_demo(client, headers["client"], book)
    assert account.status_code in (200, 201), account.get_json()
    values = {
        "user_id": str(client_user.id),
        "account_id": str(account.get_json()["id"]),
        "object_id": str(book["demo_server"]["id"]),
        "code": ib.referral_code or "NOSUCH01",
    }
    return {"headers": headers, "values": values}


def fill_path(path, values):
    for name, value in values.items():
        path = path.replace("{" + name + "}", value)
    while "{" in path:
        start, end = path.index("{"), path.index("}")
        path = path[:start] + "987654" + path[end + 1 :]
    return path


def test_every_get_route_takes_a_cache_buster_and_empty_optional_filters(client, world):
    """Every GET operation, as each role it admits, answers with `_t=1` added, with every
    optional filter sent empty, and with `page`/`size` it may not take, exactly as it
    answers without them: 200, or its normal 4xx for missing data, never a 422."""
    document = openapi(client)
    checked, answered_200, problems = 0, 0, []
    for path, operation in get_operations(document):
        parameters = [p for p in operation.get("parameters", []) if p.get("in") == "query"]
        required = [(p["name"], sample(p.get("schema", {}))) for p in parameters if p.get("required")]
        optional_empty = [(p["name"], "") for p in parameters if not p.get("required")]
        names = {p["name"] for p in parameters}
        url = fill_path(path, world["values"])
        for role in operation.get("x-roles") or [None]:
            headers = world["headers"][role] if role else {}
            base = client.get(f"{url}?{query_string(required)}", headers=headers)
            if base.status_code in (401, 422) or base.status_code >= 500:
                problems.append(f"{role} {path}: the plain request answers {base.status_code}")
                continue
            variants = {
                "_t=1": [*required, ("_t", "1")],
                "empty optional filters": [*required, *optional_empty],
            }
            if not {"page", "size"} & names:
                variants["page/size on a route that does not page"] = [*required, ("page", "2"), ("size", "5")]
            for label, pairs in variants.items():
                answer = client.get(f"{url}?{query_string(pairs)}", headers=headers)
                if answer.status_code != base.status_code:
                    problems.append(
                        f"{role} {path} with {label}: {answer.status_code} (without: {base.status_code}) "
                        f"{answer.get_data(as_text=True)[:200]}"
                    )
                elif base.is_json and isinstance(base.get_json(), dict) and "total" in base.get_json():
                    if answer.get_json().get("total") != base.get_json()["total"]:
                        problems.append(f"{role} {path} with {label}: another total")
            checked += 1
            answered_200 += base.status_code == 200
    assert not problems, "\n".join(problems)
    assert checked > 60 and answered_200 > 40, (checked, answered_200)


def test_a_cache_buster_is_ignored_but_an_unknown_body_field_is_still_refused(client, world):
    headers = world["headers"]["client"]
    assert client.get("/api/v1/client/kyc?_t=1733450000000", headers=headers).status_code == 200
    assert client.get("/api/v1/currencies?_t=123").status_code == 200
    refused = client.put("/api/v1/admin/config/broker", headers=world["headers"]["admin"], json={"_t": 1})
    assert refused.status_code == 422
    assert refused.get_json()["code"] == "validation_error"
    assert "_t" in refused.get_json()["errors"]


def test_a_nul_in_a_filter_the_route_reads_is_still_refused(client, world):
    """Ignoring unknown keys does not loosen the checks on the values a route uses."""
    headers = world["headers"]["client"]
    answer = client.get("/api/v1/client/deposits?start_time=2026-01-01%00&_t=1", headers=headers)
    assert answer.status_code == 422 and "start_time" in answer.get_json()["errors"]
    answer = client.get(
        "/api/v1/ib/commissions/details?rebate_aggregation_id=%D9%A1%D9%A2", headers=world["headers"]["ib"]
    )
    assert answer.status_code == 422 and "rebate_aggregation_id" in answer.get_json()["errors"]


# #13: `type` is an array in every spelling ---------------------------------------------


def test_balances_read_type_as_axios_as_a_repeated_key_and_comma_separated(client, world, book):
    """#13 `GET /api/v1/client/balances`: `type[]=a&type[]=b` (axios's default), `type=a&type=b`
    and `type=a,b` select the same (live) accounts."""
    headers = world["headers"]["client"]
    both_ways = open_live(client, headers, book, add_live_type(client, book, name="Live Both"))
    payout = open_live(
        client, headers, book, add_live_type(client, book, name="Live Payout", direction="withdrawal_only")
    )

    def listed(query):
        answer = client.get(f"/api/v1/client/balances?{query}", headers=headers)
        assert answer.status_code == 200, (query, answer.get_json())
        return sorted(row["trading_account_id"] for row in answer.get_json()["list"])

    both = listed("type=normal&type=withdrawal_only")
    assert both == sorted([both_ways, payout])
    assert listed("type[]=normal&type[]=withdrawal_only") == both
    assert listed("type%5B%5D=normal&type%5B%5D=withdrawal_only&_t=1") == both
    assert listed("type=normal,withdrawal_only") == both
    assert listed("type[]=withdrawal_only") == [payout]
    assert listed("type=normal") == [both_ways]  # the world's demo account is never offered
    bad = client.get("/api/v1/client/balances?type[]=normal&type[]=nonsense", headers=headers)
    assert bad.status_code == 422 and "type" in bad.get_json()["errors"]


def test_the_type_array_is_documented_as_an_array(client):
    operation = openapi(client)["paths"]["/api/v1/client/balances"]["get"]
    (parameter,) = [p for p in operation["parameters"] if p["name"] == "type"]
    assert parameter["schema"]["type"] == "array" and parameter["required"] is True


# #56 / #57: a date alone is a whole day in the broker's timezone ---------------------------


@pytest.fixture
def shanghai(client, book):
    answer = client.put(
        "/api/v1/admin/config/broker", headers=book["admin_headers"], json={"timezone": "Asia/Shanghai"}
    )
    assert answer.status_code == 200, answer.get_json()


@pytest.fixture
def two_rebates(client, factory, book, shanghai):
    """Sam's two rebates on Carol's trades: one calculated at 23:30 on 2026-03-10 in Shanghai
    (15:30 UTC), one at 00:30 on 2026-03-11 in Shanghai (16:30 UTC, still the 10th in UTC)."""
    sam = factory.ib(first_name="Sam")
    carol = factory.user(parent=sam, first_name="Carol")
    tree = {"admin": book["admin_headers"]}
    rule(client, tree)
    account = account_for(carol, book)
    late, early = closed(account), closed(account)
    assert rebates.calculate_rebates()["rebates"] == 2
    times = {late.close_deal_ticket: "2026-03-10 15:30:00", early.close_deal_ticket: "2026-03-10 16:30:00"}
    for ticket, moment in times.items():
        db.session.execute(update(Rebate).where(Rebate.close_deal_ticket == ticket).values(calculated_at=moment))
    db.session.commit()
    ids = dict(db.session.execute(select(Rebate.close_deal_ticket, Rebate.id)).all())
    return {
        "headers": factory.headers(client, sam),
        "on_the_10th": ids[late.close_deal_ticket],
        "on_the_11th": ids[early.close_deal_ticket],
    }


SEED_DETAILS = (
    "/api/v1/ib/commissions/details?page=1&size=20&rebate_aggregation_id=&time_search_type=calculate_at"
    "&start_time={start}&end_time={end}&client_user_name="
)


def detail_ids(client, headers, start, end):
    answer = client.get(SEED_DETAILS.format(start=quote(start), end=quote(end)), headers=headers)
    assert answer.status_code == 200, answer.get_json()
    return sorted(row["id"] for row in answer.get_json()["list"])


def test_commission_details_take_the_seeds_dates_as_whole_days_in_the_broker_timezone(client, two_rebates):
    """#57 with the seed's own query: `start_time`/`end_time` as `YYYY-MM-DD`, the start of the
    first day to the end of the last, in the broker's timezone (not UTC)."""
    headers = two_rebates["headers"]
    tenth, eleventh = two_rebates["on_the_10th"], two_rebates["on_the_11th"]
    assert detail_ids(client, headers, "2026-03-10", "2026-03-10") == [tenth]
    assert detail_ids(client, headers, "2026-03-11", "2026-03-11") == [eleventh]
    assert detail_ids(client, headers, "2026-03-10", "2026-03-11") == sorted([tenth, eleventh])
    assert detail_ids(client, headers, "2026-03-12", "2026-03-31") == []
    # A full time still works, and a date may be mixed with one.
    assert detail_ids(client, headers, "2026-03-10 23:00:00", "2026-03-10 23:59:59") == [tenth]
    assert detail_ids(client, headers, "2026-03-10 23:45:00", "2026-03-11") == [eleventh]
    # An empty range is no range.
    assert detail_ids(client, headers, "", "") == sorted([tenth, eleventh])


@pytest.mark.parametrize("bad", ["2026-02-30", "2026-3-10", "10/03/2026", "2026-03-10T00:00:00", "２０２６-03-10"])
def test_a_date_that_is_not_one_is_refused_naming_the_filter(client, two_rebates, bad):
    answer = client.get(SEED_DETAILS.format(start=quote(bad), end=""), headers=two_rebates["headers"])
    assert answer.status_code == 422
    assert answer.get_json()["code"] == "validation_error" and "start_time" in answer.get_json()["errors"]


def test_the_commission_details_export_takes_the_seeds_body_with_dates(client, two_rebates, run_jobs):
    """#56 with the seed's own body: dates alone, and its empty optional fields."""
    body = {
        "client_user_name": "",
        "end_time": "2026-03-10",
        "rebate_aggregation_id": "",
        "start_time": "2026-03-10",
        "time_search_type": "calculate_at",
    }
    started = client.post("/api/v1/ib/commissions/details/export", headers=two_rebates["headers"], json=body)
    assert started.status_code == 200, started.get_json()
    run_jobs()
    downloaded = client.get(started.get_json()["download_url"])
    assert downloaded.status_code == 200
    lines = [line for line in downloaded.get_data().decode("utf-8-sig").splitlines() if "Carol" in line]
    assert len(lines) == 1, lines


def test_rebate_aggregation_id_is_an_integer_in_the_document(client):
    operation = openapi(client)["paths"]["/api/v1/ib/commissions/details"]["get"]
    (parameter,) = [p for p in operation["parameters"] if p["name"] == "rebate_aggregation_id"]
    assert parameter["schema"]["type"] == "integer"
    for name in ("start_time", "end_time"):
        (time_parameter,) = [p for p in operation["parameters"] if p["name"] == name]
        pattern = time_parameter["schema"]["pattern"]
        assert re.fullmatch(pattern, "2026-03-10") and re.fullmatch(pattern, "2026-03-10 08:00:00")


def test_every_list_takes_a_date_alone(client, world, book, shanghai):
    """Every time filter of every list takes `YYYY-MM-DD` as well as `YYYY-MM-DD HH:MM:SS`:
    the admin's audit log of today (broker's timezone) holds what the book set up today."""
    from zoneinfo import ZoneInfo

    today = utcnow().replace(tzinfo=ZoneInfo("UTC")).astimezone(ZoneInfo("Asia/Shanghai")).date()
    yesterday = today - timedelta(days=1)
    admin = book["admin_headers"]

    def total(query):
        answer = client.get(f"/api/v1/admin/audit-logs?{query}", headers=admin)
        assert answer.status_code == 200, answer.get_json()
        return answer.get_json()["total"]

    everything = total("")
    assert everything > 0
    assert total(f"start_time={today}&end_time={today}") == everything
    assert total(f"start_time={yesterday}&end_time={yesterday}") == 0
    assert total(f"start_time={today + timedelta(days=1)}") == 0

    document = openapi(client)
    lists = [
        (path, operation)
        for path, operation in get_operations(document)
        if {"start_time", "end_time"} <= {p["name"] for p in operation.get("parameters", [])}
    ]
    assert len(lists) >= 12, [path for path, _ in lists]
    for path, operation in lists:
        required = [
            (p["name"], sample(p.get("schema", {})))
            for p in operation["parameters"]
            if p.get("in") == "query" and p.get("required")
        ]
        role = operation["x-roles"][0] if "admin" not in operation["x-roles"] else "admin"
        headers = world["headers"][role]
        for start, end in ((str(today), str(today)), (f"{today} 00:00:00", str(today)), (str(yesterday), "")):
            query = query_string([*required, ("start_time", start), ("end_time", end)])
            answer = client.get(f"{path}?{query}", headers=headers)
            assert answer.status_code == 200, (path, start, end, answer.get_json())
