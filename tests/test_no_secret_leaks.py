"""No password, email code, token, bank number or wallet address reaches a log, or a
response meant for anyone but its owner.

One test drives the flows that carry secrets (sign-up with an email code, sign-in, a
failed sign-in, password change, trading-account passwords, payout accounts, withdrawals
by bank and by crypto wallet) with values found nowhere else, while every log record of
every logger is captured at DEBUG together with an access log written the way gunicorn
writes one in the Procfile's format. Then the admin, the client's IB and another client
look at everything they may see (users, review queue and items, audit log, reports, an
export file, trading servers). Passwords (a trading server's manager password too),
codes and tokens must appear in no log and no response, the owner's included (they are
write-only); bank numbers and wallet addresses only in the owner's own responses:
others see them masked to their last 4 characters.
"""

import logging
import re
import shlex
import time
from decimal import Decimal

import pytest

from crm_app.config import PROJECT_ROOT
from crm_app.extensions import db
from crm_app.trading.models import TradingAccount
from crm_app.trading.services import gateway_for

REGISTER_PASSWORD = "Reg-Leak-Pass-4417"
WRONG_GUESS = "Guess-Leak-Pass-3390"
NEW_PASSWORD = "Chg-Leak-Pass-8823"
TRADE_PASSWORD = "TrdLeak4471x"
INVESTOR_PASSWORD = "InvLeak5582x"
NEW_TRADE_PASSWORD = "TrdLeak6693y"
PAYOUT_BANK_NO = "GB82LEAK60161331926819"
WITHDRAWAL_BANK_NO = "DE89LEAK37040044053201"
WALLET = "TLeakWa1etXyz9hPqRsTuVwXyZabcdefgh"  # TRC20: T and 33 base58 characters
assert len(WALLET) == 34

# Never anywhere: write-only values.
PASSWORDS = [REGISTER_PASSWORD, WRONG_GUESS, NEW_PASSWORD, TRADE_PASSWORD, INVESTOR_PASSWORD, NEW_TRADE_PASSWORD]
# Only in their owner's responses.
PAYOUT_SECRETS = [PAYOUT_BANK_NO, WITHDRAWAL_BANK_NO, WALLET]


GUNICORN_DEFAULT_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'


def procfile_access_log_format():
    """The access log format the Procfile's `web` process runs gunicorn with."""
    web = next(line for line in (PROJECT_ROOT / "Procfile").read_text().splitlines() if line.startswith("web:"))
    words = shlex.split(web.partition(":")[2])
    assert "--access-logfile" in words, "the web process writes no access log"
    for index, word in enumerate(words):
        if word == "--access-logformat":
            return words[index + 1]
        if word.startswith("--access-logformat="):
            return word.partition("=")[2]
    return GUNICORN_DEFAULT_FORMAT


class Atoms(dict):
    def __missing__(self, key):
        return "-"


class AccessLog:
    """WSGI middleware that writes each request to the log as gunicorn's access log
    would, in the Procfile's format."""

    def __init__(self, wsgi_app, log_format):
        self.wsgi_app = wsgi_app
        self.log_format = log_format
        self.log = logging.getLogger("gunicorn.access")

    def __call__(self, environ, start_response):
        status = []

        def recording_start_response(code, headers, *args):
            status.append(code.split()[0])
            return start_response(code, headers, *args)

        body = self.wsgi_app(environ, recording_start_response)
        path, query = environ["PATH_INFO"], environ.get("QUERY_STRING", "")
        atoms = Atoms(
            h=environ.get("REMOTE_ADDR", "-"),
            t=time.strftime("[%d/%b/%Y:%H:%M:%S +0000]", time.gmtime()),
            r=f"{environ['REQUEST_METHOD']} {path}{'?' + query if query else ''} HTTP/1.1",
            m=environ["REQUEST_METHOD"],
            U=path,
            q=query,
            H="HTTP/1.1",
            s=status[0] if status else "-",
            f=environ.get("HTTP_REFERER", "-"),
            a=environ.get("HTTP_USER_AGENT", "-"),
        )
        self.log.info(self.log_format, atoms)
        return body


class Observed:
    """Every answer seen in the test, by who saw it."""

    def __init__(self, client):
        self.client = client
        self.seen = []  # (viewer, method path, text)

    def __call__(self, viewer, method, path, headers=None, expect=(200, 201, 204), **kwargs):
        response = self.client.open(path, method=method, headers=headers or {}, **kwargs)
        assert response.status_code in expect, (method, path, response.status_code, response.get_data(as_text=True))
        self.seen.append((viewer, f"{method} {path}", response.get_data(as_text=True)))
        return response

    def texts(self, viewers=None):
        return [(who, where, text) for who, where, text in self.seen if viewers is None or who in viewers]


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def variants(secret):
    """The value as sent, as stored (spaces dropped, upper case), and without its last 4
    characters (what a mask keeps must not be what leaks). A 6-digit email code is looked
    for as a whole number only (any longer number may contain it by chance)."""
    if secret.isdigit():
        return {rf"(?<!\d){secret}(?!\d)"}
    normal = re.sub(r"[\s-]", "", secret).upper()
    return {re.escape(v) for v in (secret, normal, secret[:-4], normal[:-4])}


def found_in(text, secrets):
    return sorted({secret for secret in secrets for variant in variants(secret) if re.search(variant, text)})


@pytest.fixture
def channels(client, book):
    admin = book["admin_headers"]
    for code, methods in (("USD", ["bank_transfer", "cryptocurrency"]), ("USDT", ["cryptocurrency"])):
        response = client.post(
            "/api/v1/admin/currencies",
            headers=admin,
            json={"code": code, "name_en": code, "name_zh": code, "methods": methods},
        )
        assert response.status_code == 201, response.get_json()

    def channel(**values):
        body = {"allowed_currencies": ["USD"], "min_amount": "10.00", "max_amount": "5000.00", **values}
        response = client.post("/api/v1/admin/withdrawal-channels", headers=admin, json=body)
        assert response.status_code == 201, response.get_json()
        return response.get_json()["id"]

    return {
        "bank": channel(method="bank_transfer", name="Bank (USD)", fee_fixed="5.00"),
        "crypto": channel(
            method="cryptocurrency",
            name="USDT (TRC20)",
            allowed_currencies=["USDT"],
            fee_percent="1",
            exchange_rate_source="fixed",
            exchange_rates={"USDT": "1.01"},
        ),
    }


def test_no_secret_reaches_a_log_or_anyone_but_its_owner(
    app, client, factory, sim, book, channels, smtp_sink, run_jobs, caplog, monkeypatch
):
    from crm_app.broker.services import update_setting

    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(app, "wsgi_app", AccessLog(app.wsgi_app, procfile_access_log_format()))
    update_setting("broker", {"email_code_required": {"withdrawal": False, "transfer": False}})
    see = Observed(client)
    admin = book["admin_headers"]
    ib = factory.ib()
    ib_headers = factory.headers(client, ib)
    stranger_headers = factory.headers(client, factory.user())
    invite_code = see("ib", "GET", "/api/v1/ib/profile", ib_headers).get_json()["ReferralCode"]

    # Sign-up with an email code, a failed and a good sign-in, a password change.
    email = "leak.owner@example.test"
    codes = [factory.email_code(client, smtp_sink, run_jobs, email, "register")]
    registered = see(
        "owner",
        "POST",
        "/api/v1/auth/register",
        json={"email": email, "password": REGISTER_PASSWORD, "email_code": codes[0], "invite_code": invite_code},
    ).get_json()
    see("anonymous", "POST", "/api/v1/auth/login", json={"email": email, "password": WRONG_GUESS}, expect=(401,))
    signed_in = see("owner", "POST", "/api/v1/auth/login", json={"email": email, "password": REGISTER_PASSWORD})
    headers = bearer(signed_in.get_json()["token"])
    codes.append(factory.email_code(client, smtp_sink, run_jobs, email, "password_change"))
    see(
        "owner",
        "POST",
        "/api/v1/auth/password",
        headers,
        json={"old_password": REGISTER_PASSWORD, "new_password": NEW_PASSWORD, "email_code": codes[1]},
    )
    answer = see("owner", "POST", "/api/v1/auth/login", json={"email": email, "password": NEW_PASSWORD}).get_json()
    tokens = [registered["token"], registered["refresh_token"], answer["token"], answer["refresh_token"]]
    headers = bearer(answer["token"])
    user_id = answer["user_info"]["id"]

    # A trading account with its passwords, and a change of the trading password.
    account_id = see(
        "owner",
        "POST",
        "/api/v1/client/trading-accounts",
        headers,
        json={
            "currency": "USD",
            "is_demo": True,
            "leverage": 100,
            "password": TRADE_PASSWORD,
            "observe_password": INVESTOR_PASSWORD,
            "trading_account_type_id": book["demo_type"]["id"],
            "trading_platform": "MT5",
        },
    ).get_json()["id"]
    see(
        "owner",
        "PUT",
        "/api/v1/client/trading-accounts/password",
        headers,
        json={"id": account_id, "password": NEW_TRADE_PASSWORD, "type": "trade"},
    )

    # Money leaves only a live account of a verified client: KYC approved as Lee Owner, and
    # a live application (with its own trading password) approved by the admin.
    from crm_app.auth.models import User
    from tests.support.money import live_type

    factory.approved_kyc(db.session.get(User, user_id), first_name="Lee", last_name="Owner")
    see(
        "owner",
        "POST",
        "/api/v1/client/account-applications",
        headers,
        json={
            "currency": "USD",
            "leverage": 100,
            "password": TRADE_PASSWORD,
            "trading_account_type_id": live_type(client, book)["id"],
            "trading_platform": "MT5",
        },
    )
    applications = see("admin", "GET", "/api/v1/admin/audits?type=account_application", admin).get_json()["list"]
    opened = see("admin", "POST", f"/api/v1/admin/audits/{applications[0]['id']}/approve", admin, json={})
    account_id = opened.get_json()["object"]["trading_account_id"]
    account = db.session.get(TradingAccount, account_id)
    gateway_for(account.server).balance_operation(account.login, Decimal("1000.00"), f"DEP#leak{account.login}")

    # Payout accounts (a bank number, a wallet), and withdrawals by bank and by wallet.
    see(
        "owner",
        "POST",
        "/api/v1/client/payment-accounts",
        headers,
        json={
            "payment_method": "bank_transfer",
            "bank_transfer_info": {
                "bank_country": "GB",
                "bank_name": "Demo Bank",
                "bank_no": PAYOUT_BANK_NO,
                "branch_name": "City",
                "bsc_code": "20-20-15",
            },
        },
    )
    wallet_account = see(
        "owner",
        "POST",
        "/api/v1/client/payment-accounts",
        headers,
        json={
            "payment_method": "cryptocurrency",
            "cryptocurrency_info": {"network": "TRC20", "wallet_address": WALLET},
        },
    ).get_json()["id"]
    bank_withdrawal = see(
        "owner",
        "POST",
        "/api/v1/client/withdrawals",
        headers,
        json={
            "method": "bank_transfer",
            "remittance_id": channels["bank"],
            "trading_account_id": account_id,
            "withdrawal_amount": "100.00",
            "fee": "5.00",
            "exchange_rate": "1",
            "remittance_amount": "95.00",
            "currency": "USD",
            "remark": "rent",
            "bank_transfer_info": {
                "account_holder_name": "Lee Owner",
                "bank_country": "DE",
                "bank_name": "Demo Bank",
                "bank_no": WITHDRAWAL_BANK_NO,
                "branch_name": "City",
                "bsc_code": "37040044",
            },
        },
    ).get_json()
    see(
        "owner",
        "POST",
        "/api/v1/client/withdrawals",
        headers,
        json={
            "method": "cryptocurrency",
            "remittance_id": channels["crypto"],
            "trading_account_id": account_id,
            "withdrawal_amount": "100.50",
            "fee": "1.01",
            "exchange_rate": "1.01",
            "remittance_amount": "100.48",
            "currency": "USDT",
            "payment_account_id": wallet_account,
        },
    )
    # The owner sees their own payout details in full: that is what they are for.
    own = see("owner", "GET", "/api/v1/client/withdrawals", headers).get_data(as_text=True)
    assert WITHDRAWAL_BANK_NO in own and WALLET in own
    see("owner", "GET", "/api/v1/client/payment-accounts", headers)

    # What everyone else may look at.
    see("admin", "GET", f"/api/v1/admin/users?q={email}", admin)
    see("admin", "GET", f"/api/v1/admin/users/{user_id}", admin)
    queue = see("admin", "GET", "/api/v1/admin/audits?size=200", admin).get_json()["list"]
    for item in queue:
        detail = see("admin", "GET", f"/api/v1/admin/audits/{item['id']}", admin).get_json()
        if item["type"] == "withdrawal":
            masked = re.findall(r"\*\*\*\*\w{4}", str(detail["object"]))
            assert masked and all(len(m) == 8 for m in masked), detail["object"]
    see("admin", "POST", f"/api/v1/admin/audits/{bank_withdrawal['audit_id']}/approve", admin, json={})
    see("admin", "GET", "/api/v1/admin/audit-logs?size=200", admin)
    see("admin", "GET", "/api/v1/admin/trading-servers", admin)
    see("admin", "GET", f"/api/v1/admin/trading-servers/{book['demo_server']['id']}", admin)
    report = "/api/v1/reports/withdrawals?status=all&method=all"
    for viewer, viewer_headers in (("admin", admin), ("ib", ib_headers), ("stranger", stranger_headers)):
        see(viewer, "GET", report, viewer_headers)
    see("ib", "GET", "/api/v1/ib/clients?scope=all", ib_headers)
    see("ib", "GET", "/api/v1/ib/client-trading-accounts?scope=all", ib_headers)
    exported = see(
        "admin", "POST", "/api/v1/reports/withdrawals/export", admin, json={"status": "all", "method": "all"}
    )
    run_jobs()
    see("admin", "GET", exported.get_json()["download_url"])

    # Nothing write-only in any answer, the owner's included; payout details only to the owner.
    write_only = PASSWORDS + codes + [sim.manager_password]
    for viewer, where, text in see.texts():
        assert found_in(text, write_only) == [], f"{where} showed a password or code to {viewer}"
        assert "$argon2" not in text, f"{where} showed a password hash to {viewer}"
    for viewer, where, text in see.texts(viewers={"admin", "ib", "stranger", "anonymous"}):
        assert found_in(text, PAYOUT_SECRETS) == [], f"{where} showed payout details to {viewer}"

    # And nothing secret in any log line (messages, arguments, tracebacks, the access log).
    # The test's own SMTP server logs the mail it receives: the code's one intended way out.
    records = [record for record in caplog.records if record.name != "mail.log"]
    assert any(record.name == "gunicorn.access" for record in records)
    assert any(record.name.startswith("crm_app") for record in records)
    formatter = logging.Formatter()
    logged = "\n".join(formatter.format(record) + repr(record.__dict__) for record in records)
    assert found_in(logged, write_only + PAYOUT_SECRETS + tokens) == []
    assert "$argon2" not in logged


def test_the_signed_export_link_is_kept_out_of_the_access_log(app, client, factory, run_jobs, caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="gunicorn.access")
    monkeypatch.setattr(app, "wsgi_app", AccessLog(app.wsgi_app, procfile_access_log_format()))
    headers = factory.headers(client, factory.user())
    link = client.post("/api/v1/reports/deposits/export", headers=headers, json={"status": "all"})
    assert link.status_code in (200, 201), link.get_json()
    run_jobs()
    url = link.get_json()["download_url"]
    assert client.get(url).status_code == 200
    token = url.partition("token=")[2]
    logged = "\n".join(record.getMessage() for record in caplog.records if record.name == "gunicorn.access")
    assert "/download" in logged
    assert token not in logged
