"""Faults against the service as the Procfile runs it: web (gunicorn), worker, clock and
the MT simulator as real processes, on a PostgreSQL cluster and a Redis server of their own.

While several clients deposit, withdraw and transfer through the HTTP API (and an admin
approves or rejects), the test restarts PostgreSQL, restarts Redis, SIGKILLs the worker and
starts it again, and switches the simulator's faults on and off (errors, answers lost after
the deal was applied, answers slower than the CRM waits). Then, within a bounded time and
without any manual step:

- every balance operation is done or failed, none left pending or unknown;
- every deposit, withdrawal and transfer is in a final state that matches its operations
  (a failed one says why), and each client request created at most one of them;
- the simulator holds, login by login, exactly the CRM's done operations (one deal each,
  same ticket) and a balance equal to their sum;
- /healthz and /readyz answer 200, a login works, and a new deposit is paid at once.
"""

import io
import random
import shutil
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import requests

from tests.support.procfile_stack import ServiceStack, postgres_bin_dir

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
CLIENTS = 3
TRADING_TIMEOUT_SECONDS = 3
AUTO_APPROVE_MAX = Decimal("150.00")
BANK_INFO = {
    "account_holder_name": "Faye Client",
    "bank_country": "GB",
    "bank_name": "Demo Bank",
    "bank_no": "GB33BUKB20201555555555",
    "branch_name": "City",
    "bsc_code": "20-20-15",
}
REVIEWED = ("deposit", "withdrawal", "transfer")
FINAL = {
    "deposits": {"approved", "failed"},
    "withdrawals": {"approved", "disapproved", "failed"},
    "transfers": {"approved", "disapproved", "failed"},
}
# Seconds after the clients start: what breaks when. The clients stop at CLIENTS_STOP.
SCHEDULE = [
    (4, "sim faults: 30% errors, 30% answers lost after applying"),
    (11, "sim faults off"),
    (13, "SIGKILL the worker"),
    (16, "start the worker"),
    (19, "sim faults: every balance answer slower than the CRM waits"),
    (20.5, "restart PostgreSQL"),  # while requests wait for those answers, their intents committed
    (25, "sim faults off"),
    (28, "restart Redis"),
    (32, "sim faults: 30% errors, 30% answers lost after applying"),
    (35, "SIGKILL the worker"),  # while the reconciler has work
    (38, "start the worker"),
    (41, "sim faults off"),
]
CLIENTS_STOP = 44
# A key whose request left no answer is judged after this (longer than gunicorn's --timeout 30).
IDEMPOTENCY_STALE_SECONDS = 32
SETTLE_SECONDS = 100


@pytest.fixture(scope="module")
def stack():
    if postgres_bin_dir() is None:
        pytest.skip("no PostgreSQL server binaries (/usr/lib/postgresql/<version>/bin/initdb) on this machine")
    # Not under pytest's private tmp dir: the postgres user must reach its data directory.
    root = Path(tempfile.mkdtemp(prefix="crm-faults-"))
    root.chmod(0o755)
    service = ServiceStack(
        root,
        {
            "RECONCILE_INTERVAL_SECONDS": 2,
            "TRADING_TIMEOUT_SECONDS": TRADING_TIMEOUT_SECONDS,
            "TRANSFER_AUTO_APPROVE_MAX": AUTO_APPROVE_MAX,
            "IDEMPOTENCY_STALE_SECONDS": IDEMPOTENCY_STALE_SECONDS,
            "SYNC_INTERVAL_SECONDS": 3600,
            "REBATE_INTERVAL_SECONDS": 3600,
            "JWT_ACCESS_MINUTES": 60,
            "ARGON2_TIME_COST": 1,
            "ARGON2_MEMORY_COST": 1024,
            "ARGON2_PARALLELISM": 1,
        },
    )
    try:
        service.start()
    except Exception:
        diagnostics = service.diagnostics()
        service.close()
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"the stack did not start:\n{diagnostics}") from None
    yield service
    service.close()
    shutil.rmtree(root, ignore_errors=True)


# HTTP --------------------------------------------------------------------------------------


class Api:
    """One user's session; money requests carry an Idempotency-Key and are retried with it."""

    def __init__(self, base, email, password):
        self.base = base
        self.http = requests.Session()
        self.email, self.password = email, password
        self.headers = {}
        self.last_problem = ""

    def login(self, attempts=20):
        for _ in range(attempts):
            try:
                answer = self.http.post(
                    f"{self.base}/api/v1/auth/login", json={"email": self.email, "password": self.password}, timeout=15
                )
                if answer.status_code == 200:
                    self.headers = {"Authorization": f"Bearer {answer.json()['token']}"}
                    return answer
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise AssertionError(f"{self.email} cannot log in")

    def get(self, path):
        answer = self.http.get(self.base + path, headers=self.headers, timeout=15)
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
        return answer.json()

    def send(self, method, path, body=None, key=None, files=None):
        """The answer, or None when no definite one came back (outcome unknown: see `last_problem`)."""
        headers = dict(self.headers)
        if key:
            headers["Idempotency-Key"] = key
        self.last_problem = ""
        for attempt in range(8):
            try:
                answer = self.http.request(
                    method, self.base + path, headers=headers, json=body, files=files, timeout=20
                )
            except requests.RequestException as exc:
                self.last_problem = type(exc).__name__
                time.sleep(0.5 + attempt * 0.5)
                continue
            is_json = answer.headers.get("content-type", "").startswith("application/json")
            code = answer.json().get("code") if is_json else None
            if answer.status_code >= 500 or answer.status_code == 429 or code == "idempotency_key_in_use":
                self.last_problem = f"{answer.status_code} {code}"
                time.sleep(min(float(answer.headers.get("Retry-After") or 0), 3) + 0.5 + attempt * 0.5)
                continue
            return answer
        return None


def ok(answer):
    return answer is not None and 200 <= answer.status_code < 300


# The workload ----------------------------------------------------------------------------


@dataclass
class Attempt:
    kind: str
    key: str
    outcome: str  # ok, refused, unknown; after resolving: interrupted (recorded, no answer)
    detail: str = ""
    request: tuple = ()


@dataclass
class ClientDesk:
    api: Api
    accounts: list
    receipt_url: str
    deposit_channel: int
    withdrawal_channel: int
    attempts: list = field(default_factory=list)


def verify_identity(api, admin, first_name="Faye", last_name="Client"):
    """The client fills in the broker's KYC form and submits it; the admin approves it."""
    from tests.support.kyc_form import demo_kyc_modules, questionnaire_answers

    def upload():
        answer = api.send("POST", "/api/v1/uploads", files={"file": ("scan.png", io.BytesIO(PNG), "image/png")})
        assert ok(answer), answer and answer.text
        return answer.json()["url"]

    for module, data in demo_kyc_modules(upload, first_name, last_name).items():
        answer = api.send("PUT", "/api/v1/client/kyc", {"current_module": module, "kyc_data": {module: data}})
        assert ok(answer), answer and answer.text
    questionnaire_id, answers = questionnaire_answers(api.get("/api/v1/client/kyc/form"))
    answer = api.send(
        "PUT", "/api/v1/client/kyc/questionnaire", {"questionnaire_id": questionnaire_id, "answers": answers}
    )
    assert ok(answer), answer and answer.text
    answer = api.send("PUT", "/api/v1/client/kyc", {"current_module": "all", "kyc_data": {}})
    assert ok(answer), answer and answer.text
    approve_pending(admin, "kyc", api.email)


def approve_pending(admin, review_type, email):
    """Approve the user's pending review item of this type; the approved item's object."""
    queue = admin.get(f"/api/v1/admin/audits?type={review_type}&status=pending&size=100")["list"]
    item = next(i for i in queue if i["user"]["email"] == email)
    answer = admin.send("POST", f"/api/v1/admin/audits/{item['id']}/approve", {})
    assert ok(answer), answer and answer.text
    return answer.json()["object"]


def open_live_account(api, admin):
    """Money moves only through live accounts: apply for one, the admin approves it."""
    types = api.get("/api/v1/client/trading-account-types?trading_platform=MT5&is_demo=false")["list"]
    live = next(t for t in types if not t["is_demo"] and t["name"] == "Standard")
    answer = api.send(
        "POST",
        "/api/v1/client/account-applications",
        {
            "currency": "USD",
            "leverage": live["leverage_options"][0]["value"],
            "password": "Trade1234x",
            "trading_account_type_id": live["id"],
            "trading_platform": "MT5",
        },
    )
    assert ok(answer), answer and answer.text
    return approve_pending(admin, "account_application", api.email)["trading_account_id"]


def new_client(base, admin, index):
    email = f"faults-{index}-{uuid.uuid4().hex[:6]}@example.test"
    created = admin.send(
        "POST",
        "/api/v1/admin/users",
        {
            "email": email,
            "password": "Client-Meadow-93",
            "user_type": "client",
            "first_name": "Faye",
            "last_name": "Client",
        },
    )
    assert ok(created), created and created.text
    api = Api(base, email, "Client-Meadow-93")
    api.login()
    verify_identity(api, admin)
    accounts = [open_live_account(api, admin), open_live_account(api, admin)]
    receipt = api.send("POST", "/api/v1/uploads", files={"file": ("receipt.png", io.BytesIO(PNG), "image/png")})
    assert ok(receipt), receipt and receipt.text
    deposit_channel = next(
        c["id"] for c in api.get("/api/v1/client/deposit-channels")["list"] if c["method"] == "bank_transfer"
    )
    withdrawal_channel = next(
        c["id"] for c in api.get("/api/v1/client/withdrawal-channels")["list"] if c["method"] == "bank_transfer"
    )
    return ClientDesk(api, accounts, receipt.json()["url"], deposit_channel, withdrawal_channel)


def classify(answer, api):
    if answer is None:
        return "unknown", f"no definite answer, last: {api.last_problem}"
    if ok(answer):
        return "ok", ""
    return "refused", f"{answer.status_code} {answer.text[:160]}"


def attempt(desk, kind, key, path, body, idempotency_key, record=True):
    """Send one money request (retried with its key) and remember what the client was told."""
    answer = desk.api.send("POST", path, body, key=idempotency_key)
    if record or not ok(answer):
        outcome, detail = classify(answer, desk.api)
        desk.attempts.append(Attempt(kind, key, outcome, detail, request=(path, body, idempotency_key)))
    return answer


def deposit(desk, rng, amount=None, account=None):
    key = f"dep-{uuid.uuid4().hex[:12]}"
    amount = amount or Decimal(rng.choice(["60.00", "120.00", "250.00", "400.00"]))
    body = {
        "deposit_amount": f"{amount:.2f}",
        "remittance_id": desk.deposit_channel,
        "trading_account_id": account or rng.choice(desk.accounts),
        "remark": key,
    }
    draft = attempt(desk, "deposit", key, "/api/v1/client/deposits", body, key + "-draft", record=False)
    if ok(draft):
        body = {"order_number": draft.json()["order_number"], "receipt_url": desk.receipt_url}
        attempt(desk, "deposit", key, "/api/v1/client/deposits/submit", body, key + "-submit")


def withdraw(desk, rng):
    key = f"wdr-{uuid.uuid4().hex[:12]}"
    amount = Decimal(rng.choice(["55.00", "80.00", "130.00"]))
    body = {
        "method": "bank_transfer",
        "remittance_id": desk.withdrawal_channel,
        "trading_account_id": rng.choice(desk.accounts),
        "withdrawal_amount": f"{amount:.2f}",
        "fee": "5.00",
        "exchange_rate": "1",
        "remittance_amount": f"{amount - 5:.2f}",
        "currency": "USD",
        "remark": key,
        "bank_transfer_info": BANK_INFO,
    }
    attempt(desk, "withdrawal", key, "/api/v1/client/withdrawals", body, key)


def transfer(desk, rng):
    key = f"trf-{uuid.uuid4().hex[:12]}"
    source, target = rng.sample(desk.accounts, 2)
    amount = Decimal(rng.choice(["25.00", "70.00", "200.00", "300.00"]))  # above 150.00: reviewed
    body = {
        "amount": f"{amount:.2f}",
        "remark": key,
        "source_trading_account_id": source,
        "target_trading_account_id": target,
    }
    attempt(desk, "transfer", key, "/api/v1/client/transfers", body, key)


def resolve_unknown_outcomes(desks, deadline):
    """A client that got no definite answer sends the same request with the same key again
    until it gets one: done (or replayed), refused, or `interrupted` (it was recorded)."""
    for desk in desks:
        for sent in desk.attempts:
            while sent.outcome == "unknown" and time.monotonic() < deadline:
                path, body, idempotency_key = sent.request
                answer = desk.api.send("POST", path, body, key=idempotency_key)
                code = answer.json().get("code") if answer is not None and not ok(answer) else None
                if code == "idempotency_key_interrupted":
                    sent.outcome, sent.detail = "interrupted", "recorded, then interrupted"
                elif answer is not None:
                    sent.outcome, sent.detail = classify(answer, desk.api)
                    sent.detail += " (on a later retry)"
                else:
                    time.sleep(2)


def client_loop(desk, seed, stop):
    rng = random.Random(seed)
    while not stop.is_set():
        action = rng.choices((deposit, withdraw, transfer), weights=(3, 3, 4))[0]
        action(desk, rng)
        time.sleep(rng.uniform(0.1, 0.4))


class Reviewer:
    """The back office: approves deposits, approves or rejects withdrawals and transfers."""

    def __init__(self, admin):
        self.admin = admin
        self.rounds = 0
        self.decisions = Counter()

    def review_once(self):
        self.rounds += 1
        for status in ("pending", "auditing"):
            try:
                items = self.admin.http.get(
                    f"{self.admin.base}/api/v1/admin/audits?status={status}&size=100",
                    headers=self.admin.headers,
                    timeout=15,
                )
            except requests.RequestException:
                return
            if items.status_code != 200:
                return
            for item in items.json()["list"]:
                if item["type"] not in REVIEWED:
                    continue
                if status == "auditing" and not item.get("last_error"):
                    continue  # decided by a request still running (or left claimed: see the final checks)
                reject = item["type"] != "deposit" and item["id"] % 4 == 0
                verb = "reject" if reject else "approve"
                # A new key each round: an answer like "not ready yet" is replayed for the same key.
                answer = self.admin.send(
                    "POST",
                    f"/api/v1/admin/audits/{item['id']}/{verb}",
                    {"remark": "checked by the faults test"},
                    key=f"{verb}-{item['id']}-{self.rounds}",
                )
                if answer is not None:
                    self.decisions[(item["type"], verb, answer.status_code)] += 1

    def run(self, stop):
        while not stop.is_set():
            self.review_once()
            time.sleep(0.3)


# Reading the truth -----------------------------------------------------------------------


def database_rows(stack):
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(stack.postgres.url("crm", "postgresql"), row_factory=dict_row) as conn:
        return {
            "operations": conn.execute(
                "SELECT o.*, s.base_url FROM balance_operations o "
                "JOIN trading_accounts a ON a.id = o.trading_account_id "
                "JOIN trading_servers s ON s.id = a.server_id ORDER BY o.id"
            ).fetchall(),
            "accounts": conn.execute(
                "SELECT a.id, a.login, s.base_url FROM trading_accounts a "
                "JOIN trading_servers s ON s.id = a.server_id ORDER BY a.id"
            ).fetchall(),
            "deposits": conn.execute(
                "SELECT id, client_remark AS key, status, failure_reason FROM deposits WHERE status <> 'draft'"
            ).fetchall(),
            "withdrawals": conn.execute(
                "SELECT id, client_remark AS key, status, failure_reason FROM withdrawals"
            ).fetchall(),
            "transfers": conn.execute("SELECT id, remark AS key, status, failure_reason FROM transfers").fetchall(),
            "review_items": conn.execute(
                "SELECT id, type, status, last_error FROM review_items "
                "WHERE type IN ('deposit', 'withdrawal', 'transfer') ORDER BY id"
            ).fetchall(),
        }


def unsettled(rows):
    """What still moves: open operations, objects not final, review items not decided."""
    left = [
        f"operation {o['id']} {o['kind']}#{o['key']} {o['state']}"
        for o in rows["operations"]
        if o["state"] in ("pending", "unknown")
    ]
    for table, final in FINAL.items():
        left += [f"{table} {r['id']} {r['status']}" for r in rows[table] if r["status"] not in final]
    left += [
        f"review item {r['id']} {r['type']} {r['status']}"
        for r in rows["review_items"]
        if r["status"] in ("pending", "auditing")
    ]
    return left


def simulator_gateway(base_url):
    from crm_app.integrations.trading.mt5_webapi import MT5WebAPIGateway

    return MT5WebAPIGateway(base_url, 1000, "Sim-Manager-1", timezone="Etc/GMT-2", timeout=15)


def simulator_books(rows):
    """login -> (balance, {comment: [deals]}) as the simulator sees it."""
    books = {}
    now = datetime.now(UTC)
    for account in rows["accounts"]:
        gateway = simulator_gateway(account["base_url"])
        deals = defaultdict(list)
        for deal in gateway.iter_deals([account["login"]], now - timedelta(days=1), now + timedelta(days=1)):
            if deal.action in ("balance", "credit"):
                deals[deal.comment].append(deal)
        books[account["login"]] = (gateway.trade_state(account["login"]).balance, deals)
    return books


def operations_by_source(rows):
    grouped = defaultdict(list)
    for operation in rows["operations"]:
        grouped[(operation["source_type"], operation["source_id"])].append(operation)
    return grouped


def states(operations, kind):
    return [o["state"] for o in operations if o["kind"] == kind]


def check_object_matches_operations(table, row, ops):
    """The object's final status is what its balance operations say happened."""
    status, tag = row["status"], f"{table} {row['id']} ({row['key']}) is {row['status']}"
    if table == "deposits":
        dep = states(ops.get(("deposit", row["id"]), []), "DEP")
        expected = {"approved": ["done"], "failed": ["failed"]}[status]
        assert dep == expected, f"{tag} but its credit is {dep}"
    elif table == "withdrawals":
        wdr = states(ops.get(("withdrawal", row["id"]), []), "WDR")
        ref = states(ops.get(("withdrawal_refund", row["id"]), []), "REF")
        allowed = {
            "approved": [(["done"], [])],
            "disapproved": [(["done"], ["done"])],
            "failed": [(["failed"], []), (["done"], ["failed"])],
        }[status]
        assert (wdr, ref) in allowed, f"{tag} but its debit is {wdr} and its refund {ref}"
    else:
        out = states(ops.get(("transfer_out", row["id"]), []), "TRO")
        into = states(ops.get(("transfer_in", row["id"]), []), "TRI")
        ref = states(ops.get(("transfer_refund", row["id"]), []), "REF")
        allowed = {
            "approved": [(["done"], ["done"], [])],
            "disapproved": [(["done"], [], ["done"])],
            "failed": [(["failed"], [], []), (["done"], ["failed"], ["done"]), (["done"], ["failed"], ["failed"])],
        }[status]
        assert (out, into, ref) in allowed, f"{tag} but out {out}, in {into}, refund {ref}"
    if status == "failed":
        assert row["failure_reason"], f"{tag} without saying why"


# The test --------------------------------------------------------------------------------


def inject(stack, what):
    sim = stack.sim_url + "/sim/faults"
    if what.startswith("sim faults: 30%"):
        requests.post(
            sim,
            json={"error_rate": 0.3, "lost_answer_rate": 0.3, "paths": ["trade/balance", "user/account/get"]},
            timeout=10,
        ).raise_for_status()
    elif what.startswith("sim faults: every"):
        latency = (TRADING_TIMEOUT_SECONDS + 1) * 1000
        requests.post(sim, json={"latency_ms": latency, "paths": ["trade/balance"]}, timeout=10).raise_for_status()
    elif what == "sim faults off":
        requests.post(sim, json={}, timeout=10).raise_for_status()
    elif what == "SIGKILL the worker":
        stack.processes.kill("worker")
    elif what == "start the worker":
        stack.processes.start("worker")
    elif what == "restart PostgreSQL":
        stack.postgres.restart(down_seconds=2)
    elif what == "restart Redis":
        stack.redis.restart(down_seconds=2)
    else:
        raise ValueError(what)


@pytest.mark.faults
def test_money_is_exact_after_database_redis_worker_and_trading_faults(stack):
    base = stack.base_url
    admin = Api(base, "admin@demo.local", stack.demo_passwords["admin@demo.local"])
    admin.login()
    answer = admin.send(
        "PUT", "/api/v1/admin/config/broker", {"email_code_required": {"withdrawal": False, "transfer": False}}
    )
    assert ok(answer), answer and answer.text

    desks = [new_client(base, admin, index) for index in range(CLIENTS)]
    reviewer = Reviewer(admin)
    rng = random.Random(11)
    for desk in desks:  # money to move around, before anything breaks
        for account in desk.accounts:
            deposit(desk, rng, amount=Decimal("1500.00"), account=account)
    reviewer.review_once()

    stop_clients, stop_reviewer = threading.Event(), threading.Event()
    threads = [
        threading.Thread(target=client_loop, args=(desk, index, stop_clients), daemon=True)
        for index, desk in enumerate(desks)
    ]
    reviewer_thread = threading.Thread(target=reviewer.run, args=(stop_reviewer,), daemon=True)
    started = time.monotonic()
    for thread in (*threads, reviewer_thread):
        thread.start()
    timeline = []
    try:
        for at, what in SCHEDULE:
            time.sleep(max(0, started + at - time.monotonic()))
            began = time.monotonic() - started
            inject(stack, what)
            timeline.append(f"{began:5.1f}s-{time.monotonic() - started:5.1f}s {what}")
        time.sleep(max(0, started + CLIENTS_STOP - time.monotonic()))
    finally:
        requests.post(stack.sim_url + "/sim/faults", json={}, timeout=10)
        if not stack.processes.alive("worker"):
            stack.processes.start("worker")
        stop_clients.set()
        for thread in threads:
            thread.join(60)
    resolve_unknown_outcomes(desks, time.monotonic() + IDEMPOTENCY_STALE_SECONDS + 30)

    # Settling: the reviewer keeps deciding what is ready; the clock and worker do the rest.
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        rows = database_rows(stack)
        left = unsettled(rows)
        if not left or time.monotonic() > deadline:
            break
        time.sleep(1)
    stop_reviewer.set()
    reviewer_thread.join(30)
    settle_seconds = time.monotonic() - started - CLIENTS_STOP
    attempts = [sent for desk in desks for sent in desk.attempts]
    late = [(a.kind, a.outcome, a.detail) for a in attempts if "later" in a.detail or a.outcome == "interrupted"]
    summary = (
        "timeline:\n  "
        + "\n  ".join(timeline)
        + f"\nclient requests: {dict(Counter((a.kind, a.outcome) for a in attempts))}"
        + f"\nanswered on a later retry: {late}"
        f"\nreviews: {dict(reviewer.decisions)}\nsettled {settle_seconds:.0f} s after the clients stopped"
    )
    assert not left, f"not settled after {SETTLE_SECONDS} s: {left[:20]}\n{summary}\n{stack.diagnostics()}"

    # Every Procfile process is up: none died of the faults (the worker was restarted by us).
    for name in ("web", "worker", "clock", "sim"):
        assert stack.processes.alive(name), f"{name} died:\n{stack.processes.log_tail(name)}"

    # Each object matches its balance operations; failed ones say why.
    ops = operations_by_source(rows)
    for table in FINAL:
        for row in rows[table]:
            check_object_matches_operations(table, row, ops)

    # Each client request created at most one object; each acknowledged one exactly one.
    created = Counter(row["key"] for table in FINAL for row in rows[table])
    assert all(count == 1 for count in created.values()), [key for key, count in created.items() if count > 1]
    for sent in attempts:
        assert sent.outcome != "unknown", f"the client never got a definite answer: {sent}"
        if sent.outcome in ("ok", "interrupted"):
            assert created[sent.key] == 1, f"acknowledged but not recorded: {sent}"
        else:
            assert created[sent.key] == 0, f"refused but recorded: {sent}"

    # The simulator and the CRM agree, login by login: one deal per done operation, nothing else.
    books = simulator_books(rows)
    done = defaultdict(dict)
    for operation in rows["operations"]:
        if operation["state"] == "done":
            done[operation["login"]][f"{operation['kind']}#{operation['key']}"] = operation
    for login, (balance, deals) in books.items():
        assert {comment: len(found) for comment, found in deals.items()} == dict.fromkeys(done[login], 1), (
            f"login {login}: the simulator's balance deals differ from the CRM's done operations"
        )
        for comment, operation in done[login].items():
            assert deals[comment][0].ticket == operation["ticket"], f"{comment}: ticket differs"
            assert deals[comment][0].profit == operation["amount"], f"{comment}: amount differs"
        assert balance == sum((o["amount"] for o in done[login].values()), Decimal("0")), f"login {login}: balance"

    # The faults reached the money path: answers were lost and settled by the reconciler.
    web_log = stack.processes.log_path("web").read_text(errors="replace")
    assert "answer lost" in web_log, "no balance operation lost its answer: the trading faults missed"

    # The service answers again, without a manual step: probes, a login, a deposit paid at once.
    assert requests.get(base + "/healthz", timeout=10).status_code == 200
    ready = requests.get(base + "/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    desk = desks[0]
    desk.api.login()
    for table, path in (("withdrawals", "/api/v1/client/withdrawals"), ("transfers", "/api/v1/client/transfers")):
        listed = {item["order_number"]: item["status"] for item in desk.api.get(path + "?size=100")["list"]}
        assert listed and all(status in FINAL[table] for status in listed.values()), (table, listed)
    before = len(desk.attempts)
    deposit(desk, rng, amount=Decimal("77.00"))
    assert desk.attempts[before].outcome == "ok", desk.attempts[before]
    item = next(i for i in admin.get("/api/v1/admin/audits?type=deposit&status=pending&size=10")["list"])
    approved = admin.send("POST", f"/api/v1/admin/audits/{item['id']}/approve", {}, key=f"final-{item['id']}")
    assert ok(approved) and approved.json()["object"]["status"] == "approved", approved and approved.text
    print(summary)


def test_the_clock_starts_its_loop_again_after_a_redis_outage(monkeypatch):
    """RQ's cron loop ends on the first Redis error; the clock process must carry on."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    from workers import clock

    class FlakyScheduler:
        starts = 0

        def start(self):
            self.starts += 1
            if self.starts < 3:
                raise RedisConnectionError("Connection refused")

    monkeypatch.setattr(clock.time, "sleep", lambda seconds: None)
    scheduler = FlakyScheduler()
    clock.run_through_redis_outages(scheduler)
    assert scheduler.starts == 3


# The Idempotency-Key when a request dies half-way (in process) ----------------------------


@pytest.fixture
def two_accounts(client, factory, book, ctx):
    """A verified client with two live accounts, the first holding 1000.00; no email codes for transfers."""
    from crm_app.broker.services import update_setting
    from tests.support.money import fund, open_live_account, verified_client

    update_setting("broker", {"email_code_required": {"transfer": False}})
    _, headers = verified_client(client, factory)
    source, target = (open_live_account(client, headers, book) for _ in range(2))
    fund(source, "1000.00")
    return {"headers": headers, "source": source, "target": target}


def send_transfer(client, accounts, amount, key):
    return client.post(
        "/api/v1/client/transfers",
        headers={**accounts["headers"], **key},
        json={
            "amount": amount,
            "remark": "rebalance",
            "source_trading_account_id": accounts["source"],
            "target_trading_account_id": accounts["target"],
        },
    )


def transfers_made():
    from sqlalchemy import func, select

    from crm_app.extensions import db
    from crm_app.transfers.models import Transfer

    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(Transfer))


def boom(*args, **kwargs):
    raise RuntimeError("the database went away")


def test_a_key_whose_request_failed_after_committing_is_never_run_again(client, two_accounts, monkeypatch):
    from crm_app.transfers import services as transfers

    key = {"Idempotency-Key": uuid.uuid4().hex}
    monkeypatch.setattr(transfers, "drive", boom)  # after the transfer's intent is committed
    with pytest.raises(RuntimeError):
        send_transfer(client, two_accounts, "50.00", key)
    monkeypatch.undo()

    again = send_transfer(client, two_accounts, "50.00", key)
    assert again.status_code == 409 and again.get_json()["code"] == "idempotency_key_interrupted"
    assert transfers_made() == 1


def test_a_key_whose_request_failed_before_committing_runs_on_retry(client, two_accounts, monkeypatch):
    from crm_app.money import services as money

    key = {"Idempotency-Key": uuid.uuid4().hex}
    monkeypatch.setattr(money, "hold_for_debit", boom)
    with pytest.raises(RuntimeError):
        send_transfer(client, two_accounts, "50.00", key)
    monkeypatch.undo()

    assert send_transfer(client, two_accounts, "50.00", key).status_code == 201
    assert transfers_made() == 1


def test_a_key_left_behind_by_a_dead_request_is_judged_by_what_it_committed(app, client, two_accounts, monkeypatch):
    """The process died (or the database vanished) before the key could be released."""
    from crm_app.money import idempotency
    from crm_app.money import services as money
    from crm_app.transfers import services as transfers

    monkeypatch.setattr(idempotency, "_finish", boom)
    nothing_done, done = {"Idempotency-Key": uuid.uuid4().hex}, {"Idempotency-Key": uuid.uuid4().hex}
    with monkeypatch.context() as patch:
        patch.setattr(money, "hold_for_debit", boom)
        with pytest.raises(RuntimeError):
            send_transfer(client, two_accounts, "50.00", nothing_done)
    with monkeypatch.context() as patch:
        patch.setattr(transfers, "drive", boom)
        with pytest.raises(RuntimeError):
            send_transfer(client, two_accounts, "60.00", done)
    monkeypatch.undo()

    for key in (nothing_done, done):  # young keys: their request may still be running
        assert send_transfer(client, two_accounts, "50.00" if key is nothing_done else "60.00", key).status_code == 409
    monkeypatch.setitem(app.config, "IDEMPOTENCY_STALE_SECONDS", 0)
    assert send_transfer(client, two_accounts, "50.00", nothing_done).status_code == 201
    stale_done = send_transfer(client, two_accounts, "60.00", done)
    assert stale_done.status_code == 409 and stale_done.get_json()["code"] == "idempotency_key_interrupted"
    assert transfers_made() == 2
