"""The simulator's WSGI app: the MT5 Web API of every hosted server, and /sim control routes.

`/<server_key>/api/...` speaks the Web API wire format, manager handshake included; a
session is a cookie set by auth/start, valid once auth/answer proved the password, and
forgotten after `session_idle_seconds` without a call (default 180); the server then answers
HTTP 403 or, with `session_expired_answer` "retcode8", a JSON answer carrying retcode
"8 Not enough permissions" - MetaQuotes document neither, servers differ. `/sim/...` needs no login: it is
how demos and tests trade, inject faults and move the clock.
"""

import logging
import random
import secrets
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

from flask import Flask, jsonify, make_response, request
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from crm_app.integrations.trading.simulator import book, config, db
from crm_app.integrations.trading.simulator.activity import ActivityRun
from crm_app.integrations.trading.simulator.market import Quotes, symbol_spec
from crm_app.integrations.trading.simulator.wire import (
    AUTH_ACCOUNT_INVALID,
    AUTH_CLIENT_INVALID,
    AUTH_CLIENT_OLD,
    ERR_FREQUENT,
    ERR_NOSERVICE,
    ERR_NOTFOUND,
    ERR_PARAMS,
    MIN_WEB_API_VERSION,
    PENDING_TYPES,
    MTError,
    money,
    proof_of_password,
    retcode,
    text_money,
)

log = logging.getLogger(__name__)

SESSION_COOKIE = "mt5_session"
AUTH_ANSWER_WINDOW_SECONDS = 10  # "no more than 10 seconds" between auth/start and auth/answer
SERVER_BUILD = "4330"
TRANSIENT_FAULT_CODES = (ERR_NOSERVICE, ERR_FREQUENT)
PUBLIC_ENDPOINTS = {"auth/start", "auth/answer"}


class ControlError(Exception):
    """A bad /sim request: answered with HTTP `status` and a message."""

    def __init__(self, message, status=400, code=None):
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass
class ApiCall:
    """What an endpoint handler gets: the transaction, the server, merged parameters, the clock."""

    conn: object
    server: object
    params: "Params"
    now: datetime
    session_token: str | None
    cookies: list = field(default_factory=list)


class Params:
    """Query string and JSON body merged, keys case-insensitive; the body wins, as on MT."""

    def __init__(self, query, body):
        self.values = {key.lower(): value for key, value in query.items()}
        if isinstance(body, dict):
            self.values.update({key.lower(): value for key, value in body.items()})

    def get(self, *names, default=None):
        for name in names:
            if self.values.get(name.lower()) not in (None, ""):
                return self.values[name.lower()]
        return default

    def int(self, name, default=None):
        value = self.get(name)
        if value is None:
            if default is None:
                raise MTError(ERR_PARAMS, f"{name} is required")
            return default
        return book.as_int(value, name)

    def list(self, name):
        value = self.get(name)
        if value is None:
            return []
        items = value if isinstance(value, list) else str(value).split(",")
        return [str(item).strip() for item in items if str(item).strip()]

    def int_list(self, name):
        return [book.as_int(item, name) for item in self.list(name)]


# Endpoints ---------------------------------------------------------------------------------------

API = {}


def endpoint(path):
    def register(handler):
        API[path] = handler
        return handler

    return register


@endpoint("auth/start")
def auth_start(call):
    version = call.params.int("version", default=0)
    agent = str(call.params.get("agent", default=""))
    if version < MIN_WEB_API_VERSION:
        raise MTError(AUTH_CLIENT_OLD)
    if not agent or " " in agent:
        raise MTError(ERR_PARAMS, "agent must be non-empty and without spaces")
    if str(call.params.get("type", default="")).lower() != "manager":
        raise MTError(AUTH_CLIENT_INVALID)
    if call.params.int("login", default=0) != call.server.manager_login:
        raise MTError(AUTH_ACCOUNT_INVALID)
    token, srv_rand, moment = book.new_token(), secrets.token_hex(16), time.time()
    call.conn.execute(
        db.sessions.insert().values(
            token=token,
            server_key=call.server.key,
            manager_login=call.server.manager_login,
            srv_rand=srv_rand,
            started_at=moment,
            authenticated=False,
            last_seen=moment,
        )
    )
    call.cookies.append(token)
    return {"retcode": retcode(0), "version_access": SERVER_BUILD, "srv_rand": srv_rand}


@endpoint("auth/answer")
def auth_answer(call):
    session = None
    if call.session_token:
        session = call.conn.execute(
            select(db.sessions).where(
                db.sessions.c.token == call.session_token, db.sessions.c.server_key == call.server.key
            )
        ).first()
    if session is None or time.time() - session.started_at > AUTH_ANSWER_WINDOW_SECONDS:
        raise MTError(AUTH_ACCOUNT_INVALID, "no authentication in progress (or started over 10 s ago)")
    cli_rand = str(call.params.get("cli_rand", default=""))
    expected = proof_of_password(call.server.manager_password_hash, session.srv_rand)
    if str(call.params.get("srv_rand_answer", default="")).lower() != expected:
        call.conn.execute(delete(db.sessions).where(db.sessions.c.token == session.token))
        return {"retcode": retcode(AUTH_ACCOUNT_INVALID)}  # the refusal is committed, not rolled back
    try:
        if len(bytes.fromhex(cli_rand)) != 16:
            raise ValueError
    except ValueError:
        raise MTError(ERR_PARAMS, "cli_rand must be 16 random bytes in hex") from None
    call.conn.execute(
        update(db.sessions)
        .where(db.sessions.c.token == session.token)
        .values(authenticated=True, last_seen=time.time())
    )
    return {
        "retcode": retcode(0),
        "cli_rand_answer": proof_of_password(call.server.manager_password_hash, cli_rand),
        "version_trade": SERVER_BUILD,
    }


@endpoint("test/access")
def test_access(call):
    return {"retcode": retcode(0)}


@endpoint("quit")
def quit_session(call):
    call.conn.execute(delete(db.sessions).where(db.sessions.c.token == call.session_token))
    return {"retcode": retcode(0)}


@endpoint("time/server")
def time_server(call):
    stamp = book.server_seconds(call.server, call.now)
    wall = datetime.fromtimestamp(stamp, UTC).strftime("%Y.%m.%d %H:%M:%S")
    return answer({"Time": f"{stamp} {wall}"})


@endpoint("time/get")
def time_settings(call):
    follows_dst = "1" if call.server.timezone_name else "0"
    offset = book.utc_offset_minutes(call.server, call.now)
    return answer({"Daylight": follows_dst, "DaylightState": follows_dst, "TimeZone": str(offset), "TimeServer": ""})


@endpoint("group/get")
def group_get(call):
    group = book.load_group(call.conn, call.server.key, str(call.params.get("group", default="")))
    if group is None:
        raise MTError(ERR_NOTFOUND)
    return answer(
        {
            "Group": group.name,
            "Currency": group.currency,
            "CurrencyDigits": "2",
            "AuthPasswordMin": str(group.password_min_length),
            "MarginSOMode": "0",
            "MarginStopOut": format(group.stop_out_level, "f"),
        }
    )


def user_fields(params):
    return {
        "login": params.get("login"),
        "group": params.get("group"),
        "name": params.get("name"),
        "email": params.get("email"),
        "country": params.get("country"),
        "comment": params.get("comment"),
        "leverage": params.get("leverage"),
        "pass_main": params.get("pass_main", "passmain", "pass-main"),
        "pass_investor": params.get("pass_investor", "passinvestor"),
    }


@endpoint("user/add")
def user_add(call):
    account = book.add_account(call.conn, call.server, user_fields(call.params), call.now)
    return answer(book.user_record(account))


@endpoint("user/get")
def user_get(call):
    return answer(book.user_record(book.require_account(call.conn, call.server.key, call.params.int("login"))))


@endpoint("user/update")
def user_update(call):
    fields = user_fields(call.params)
    account = book.update_account(call.conn, call.server, call.params.int("login"), fields)
    return answer(book.user_record(account))


@endpoint("user/logins")
def user_logins(call):
    masks = call.params.list("group")
    if not masks:
        raise MTError(ERR_PARAMS, "group is required")
    return answer([str(login) for login in sorted(book.logins_of_groups(call.conn, call.server, masks))])


@endpoint("user/check_password")
def user_check_password(call):
    kind = str(call.params.get("type", default="main")).lower()
    book.verify_password(call.conn, call.server, call.params.int("login"), kind, call.params.get("password"))
    return {"retcode": retcode(0)}


@endpoint("user/change_password")
def user_change_password(call):
    kind = str(call.params.get("type", default="main")).lower()
    password = call.params.get("password")
    book.change_password(call.conn, call.server, call.params.int("login"), kind, password, call.now)
    return {"retcode": retcode(0)}


@endpoint("user/account/get")
def user_account_get(call):
    account = book.require_account(call.conn, call.server.key, call.params.int("login"))
    return answer(book.trade_account_record(account, book.account_figures(call.conn, call.server, account)))


@endpoint("trade/balance")
def trade_balance(call):
    ticket = book.balance_operation(
        call.conn,
        call.server,
        call.params.int("login"),
        call.params.int("type"),
        call.params.get("balance", default="0"),
        str(call.params.get("comment", default="")),
        str(call.params.get("check_margin", default="1")) != "0",
        call.now,
    )
    return answer({"Ticket": str(ticket)})


def batch_arguments(call, with_period):
    arguments = [call.params.int_list("login"), call.params.list("group"), call.params.int_list("ticket")]
    if with_period:
        start, end = call.params.get("from"), call.params.get("to")
        if (arguments[0] or arguments[1]) and (start is None or end is None):
            raise MTError(ERR_PARAMS, "from and to are required with login or group")
        arguments += [
            None if start is None else book.as_int(start, "from"),
            None if end is None else book.as_int(end, "to"),
        ]
    return arguments


@endpoint("deal/get_batch")
def deal_get_batch(call):
    rows = book.find_deals(call.conn, call.server, *batch_arguments(call, True))
    return answer([book.deal_record(row) for row in rows])


@endpoint("history/get_batch")
def history_get_batch(call):
    rows = book.find_history_orders(call.conn, call.server, *batch_arguments(call, True))
    return answer([book.order_record(row) for row in rows])


@endpoint("order/get_batch")
def order_get_batch(call):
    rows = book.find_open_orders(call.conn, call.server, *batch_arguments(call, False))
    return answer([book.order_record(row) for row in rows])


@endpoint("position/get_batch")
def position_get_batch(call):
    rows = book.find_positions(call.conn, call.server, *batch_arguments(call, False))
    quotes = Quotes.load(call.conn)
    currencies = {}
    records = []
    for row in rows:
        if row.login not in currencies:
            account = book.load_account(call.conn, call.server.key, row.login)
            currencies[row.login] = book.load_group(call.conn, call.server.key, account.group_name).currency
        records.append(book.position_record(row, quotes, currencies[row.login]))
    return answer(records)


def answer(value):
    return {"retcode": retcode(0), "answer": value}


# The simulator ------------------------------------------------------------------------------------


class Simulator:
    """Shared by every request of one process; all state is in the database."""

    def __init__(self, engine, session_idle_seconds, session_expired_answer="403", refuse_group_reads=False):
        self.engine = engine
        self.session_idle_seconds = session_idle_seconds
        self.defaults = {"session_expired_answer": session_expired_answer, "refuse_group_reads": refuse_group_reads}
        self.dice = random.Random()

    def settings(self, conn=None):
        """Session answer and group-read rights: the start-up defaults, overridden by /sim/sessions."""
        if conn is None:
            with self.engine.begin() as conn:
                return self.settings(conn)
        return {**self.defaults, **(book.get_state(conn, "session_settings", {}) or {})}

    def not_logged_in(self, conn):
        if self.settings(conn)["session_expired_answer"] == "retcode8":
            return {"retcode": retcode(8)}, 200, []
        return {"retcode": retcode(8)}, 403, []

    def faults(self):
        with self.engine.begin() as conn:
            return book.get_state(conn, "faults", {}) or {}

    def faults_for(self, server_key, endpoint_path):
        faults = self.faults()
        if faults.get("servers") and server_key not in faults["servers"]:
            return {}
        if faults.get("paths") and endpoint_path not in faults["paths"]:
            return {}
        return faults

    def handle_api(self, server_key, endpoint_path, params, session_token):
        handler = API.get(endpoint_path)
        if handler is None:
            return {"retcode": retcode(ERR_PARAMS)}, 404, []
        for attempt in range(3):
            call = None
            try:
                with self.engine.begin() as conn:
                    server = book.load_server(conn, server_key)
                    if server is None:
                        return {"error": f"no simulated server {server_key!r}"}, 404, []
                    if endpoint_path == "auth/start":
                        self.forget_stale_sessions(conn)
                    logged_in = endpoint_path in PUBLIC_ENDPOINTS or self.session_is_live(conn, server, session_token)
                    if not logged_in:
                        return self.not_logged_in(conn)
                    if endpoint_path == "group/get" and self.settings(conn)["refuse_group_reads"]:
                        return {"retcode": retcode(8)}, 200, []
                    call = ApiCall(conn, server, params, book.sim_now(conn), session_token)
                    payload = handler(call)
                return payload, 200, call.cookies
            except MTError as exc:
                return {"retcode": retcode(exc.code)}, 200, []
            except IntegrityError:
                # Another process took the same new login between our read and our insert.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def forget_stale_sessions(self, conn):
        """Sessions idle too long, and handshakes never finished, are gone for good."""
        now = time.time()
        conn.execute(
            delete(db.sessions).where(
                db.sessions.c.last_seen < now - max(self.session_idle_seconds, AUTH_ANSWER_WINDOW_SECONDS)
            )
        )

    def session_is_live(self, conn, server, token):
        if not token:
            return False
        session = conn.execute(
            select(db.sessions).where(db.sessions.c.token == token, db.sessions.c.server_key == server.key)
        ).first()
        now = time.time()
        if session is None or not session.authenticated:
            return False
        if now - session.last_seen > self.session_idle_seconds:
            conn.execute(delete(db.sessions).where(db.sessions.c.token == token))
            return False
        if now - session.last_seen > 1:
            conn.execute(update(db.sessions).where(db.sessions.c.token == token).values(last_seen=now))
        return True


def drop_connection():
    """Close the client's socket without an answer: the change is applied, the answer is lost."""
    sock = request.environ.get("werkzeug.socket") or request.environ.get("gunicorn.socket")
    if sock is None:
        return False
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    return True


# Control routes ---------------------------------------------------------------------------------------


def parse_time(value, field_name):
    """ISO 8601 (naive means UTC) or Unix seconds, to an aware UTC datetime."""
    if value in (None, ""):
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ControlError(f"{field_name}: not an ISO 8601 time or Unix seconds") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_decimal(data, name, required=False):
    value = data.get(name)
    if value in (None, ""):
        if required:
            raise ControlError(f"{name} is required")
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise ControlError(f"{name}: not a number") from None


def target_account(conn, data):
    """The (server, account) a control request is about: by login, on `server` when given."""
    if data.get("login") in (None, ""):
        raise ControlError("login is required")
    login = book.as_int(data["login"], "login")
    query = select(db.accounts).where(db.accounts.c.login == login)
    if data.get("server"):
        query = query.where(db.accounts.c.server_key == data["server"])
    found = conn.execute(query).all()
    if not found:
        raise ControlError(f"no account {login}", status=404)
    if len(found) > 1:
        raise ControlError(f"login {login} exists on several servers: say which with 'server'")
    account = found[0]
    return book.load_server(conn, account.server_key), account


def create_simulator_app(
    database_url=None,
    *,
    servers=None,
    config_path=None,
    session_idle_seconds=None,
    session_expired_answer=None,
    refuse_group_reads=None,
):
    """The simulator as a plain Flask app (not the CRM app), with its book in its own database."""
    import os

    app = Flask("crm_app.integrations.trading.simulator")
    app.json.sort_keys = False
    engine = db.make_engine(config.database_url(database_url))
    db.create_tables(engine)
    config_path = config_path or os.environ.get("MT_SIM_CONFIG")
    definitions = servers if servers is not None else (config.load_server_file(config_path) if config_path else None)
    with engine.begin() as conn:
        if definitions is None and conn.execute(select(db.servers.c.key)).first() is None:
            definitions = config.default_servers()
        for definition in definitions or []:
            book.upsert_server(conn, definition)
        Quotes.load(conn)  # first start: seed the quotes
    file_settings = config.load_settings_file(config_path) if config_path and servers is None else {}
    simulator = Simulator(
        engine,
        config.session_idle_seconds(session_idle_seconds),
        config.session_expired_answer(session_expired_answer, file_settings),
        config.refuse_group_reads(refuse_group_reads, file_settings),
    )
    app.extensions["mt_sim"] = simulator
    register_api_routes(app, simulator)
    register_control_routes(app, simulator)
    return app


def register_api_routes(app, simulator):
    @app.route("/<server_key>/api/<path:endpoint_path>", methods=["GET", "POST"])
    def web_api(server_key, endpoint_path):
        endpoint_path = endpoint_path.strip("/").lower()
        faults = simulator.faults_for(server_key, endpoint_path)
        if faults.get("latency_ms"):
            time.sleep(float(faults["latency_ms"]) / 1000)
        if faults.get("error_rate") and simulator.dice.random() < float(faults["error_rate"]):
            return jsonify({"retcode": retcode(simulator.dice.choice(TRANSIENT_FAULT_CODES))})
        body = request.get_json(silent=True) if request.data else None
        params = Params(request.args, body)
        token = request.cookies.get(SESSION_COOKIE)
        payload, status, cookies = simulator.handle_api(server_key, endpoint_path, params, token)
        response = make_response(jsonify(payload), status)
        for cookie in cookies:
            response.set_cookie(SESSION_COOKIE, cookie, path=f"/{server_key}", httponly=True, samesite="Strict")
        lost = faults.get("lost_answer_rate") and simulator.dice.random() < float(faults["lost_answer_rate"])
        if lost and drop_connection():
            log.info("fault: dropped the answer to %s/%s after applying it", server_key, endpoint_path)
        return response


def register_control_routes(app, simulator):
    engine = simulator.engine

    @app.errorhandler(ControlError)
    def control_error(exc):
        body = {"error": str(exc)}
        if exc.code is not None:
            body["retcode"] = retcode(exc.code)
        return jsonify(body), exc.status

    def control_data():
        data = request.get_json(silent=True)
        if data is None and request.data:
            raise ControlError("the body must be JSON")
        return data or {}

    def run(work):
        """A control request's transaction; MT refusals become HTTP 400 with the retcode."""
        try:
            with engine.begin() as conn:
                return work(conn)
        except MTError as exc:
            raise ControlError(str(exc), code=exc.code) from None
        except LookupError as exc:
            raise ControlError(str(exc)) from None

    @app.get("/sim/health")
    def health():
        return {"status": "ok"}

    @app.get("/sim/servers")
    def list_servers():
        def work(conn):
            rows = conn.execute(select(db.servers).order_by(db.servers.c.key)).all()
            return {"servers": [book.describe_server(conn, row) for row in rows]}

        return run(work)

    @app.post("/sim/servers")
    def define_servers():
        data = control_data()
        definitions = data.get("servers", [data]) if isinstance(data, dict) else data
        try:
            run(lambda conn: [book.upsert_server(conn, definition) for definition in definitions])
        except (KeyError, ValueError) as exc:
            raise ControlError(f"bad server definition: {exc}") from None
        return {"servers": [definition["key"] for definition in definitions]}, 201

    @app.route("/sim/faults", methods=["GET", "POST"])
    def faults():
        if request.method == "GET":
            return simulator.faults()
        data = control_data()
        settings = {
            "error_rate": float(data.get("error_rate") or 0),
            "latency_ms": int(data.get("latency_ms") or 0),
            "lost_answer_rate": float(data.get("lost_answer_rate") or 0),
            "paths": [str(path).strip("/").lower() for path in data.get("paths") or []],
            "servers": list(data.get("servers") or []),
        }
        if not all(0 <= settings[rate] <= 1 for rate in ("error_rate", "lost_answer_rate")):
            raise ControlError("rates are between 0 and 1")
        run(lambda conn: book.set_state(conn, "faults", settings))
        return settings

    @app.route("/sim/sessions", methods=["GET", "POST"])
    def sessions():
        """GET: the session settings; POST: change `session_expired_answer` ("403" or
        "retcode8") and/or `refuse_group_reads` until the next change."""
        if request.method == "GET":
            return simulator.settings()
        data = control_data()
        changes = {}
        if "session_expired_answer" in data:
            try:
                changes["session_expired_answer"] = config.session_expired_answer(str(data["session_expired_answer"]))
            except ValueError as exc:
                raise ControlError(str(exc)) from None
        if "refuse_group_reads" in data:
            changes["refuse_group_reads"] = bool(data["refuse_group_reads"])

        def work(conn):
            current = book.get_state(conn, "session_settings", {}) or {}
            book.set_state(conn, "session_settings", {**current, **changes})
            return simulator.settings(conn)

        return run(work)

    @app.post("/sim/sessions/drop")
    def drop_sessions():
        """Forget every manager session (a server restart, a load balancer moving connections)."""

        def work(conn):
            return {"dropped": conn.execute(delete(db.sessions)).rowcount}

        return run(work)

    @app.route("/sim/clock", methods=["GET", "POST"])
    def clock():
        data = control_data() if request.method == "POST" else {}

        def work(conn):
            minutes = int(data.get("advance_minutes") or 0)
            if minutes < 0:
                raise ControlError("the clock only moves forward")
            if minutes:
                book.advance_clock(conn, minutes * 60)
            return {"now": book.sim_now(conn).isoformat()}

        return run(work)

    @app.post("/sim/prices")
    def set_price():
        data = control_data()
        spec = symbol_spec(data.get("symbol"))
        if spec is None:
            raise ControlError("unknown symbol")
        bid = spec.round_price(parse_decimal(data, "bid", required=True))
        ask = spec.round_price(parse_decimal(data, "ask") or bid + spec.spread)
        if ask < bid:
            raise ControlError("ask must not be below bid")
        run(lambda conn: Quotes.load(conn).set(conn, spec.name, bid, ask))
        return {"symbol": spec.name, "bid": format(bid, "f"), "ask": format(ask, "f")}

    @app.post("/sim/trades")
    def post_trade():
        data = control_data()
        return run(lambda conn: record_trade(conn, data)), 201

    @app.post("/sim/pending-orders")
    def post_pending_order():
        data = control_data()
        return run(lambda conn: record_pending_order(conn, data)), 201

    @app.post("/sim/activity")
    def post_activity():
        data = control_data()
        minutes = int(data.get("minutes") or 0)
        if not 1 <= minutes <= 60 * 24 * 31:
            raise ControlError("minutes must be 1 to 44640")
        activity = ActivityRun(
            engine,
            server_key=data.get("server"),
            logins=data.get("logins") or None,
            seed=data.get("seed"),
            traders_act=data.get("traders_act", True) is not False,
        )
        return activity.run(minutes)


def trade_basics(conn, data):
    server, account = target_account(conn, data)
    spec = symbol_spec(data.get("symbol"))
    if spec is None:
        raise ControlError("unknown symbol (use a six-letter FX pair or XAUUSD)")
    lots = parse_decimal(data, "volume", required=True)
    if lots <= 0:
        raise ControlError("volume must be positive")
    return server, account, spec, lots, Quotes.load(conn), book.sim_now(conn)


def record_trade(conn, data):
    """/sim/trades: an open position, or (with close_price) a closed trade of two deals.

    `commission` is the charge for the whole trade, booked on the entry deal (default: the
    group's commission per lot on each deal); `swap` is booked on the position.
    """
    server, account, spec, lots, quotes, now = trade_basics(conn, data)
    side = str(data.get("side", "")).lower()
    if side not in ("buy", "sell"):
        raise ControlError("side must be BUY or SELL")
    open_price = parse_decimal(data, "open_price")
    if open_price is None:
        if not quotes.has(spec.name):
            raise ControlError(f"no quote for {spec.name}: give open_price")
        open_price = quotes.ask(spec.name) if side == "buy" else quotes.bid(spec.name)
    close_price = parse_decimal(data, "close_price")
    commission = parse_decimal(data, "commission")
    swap = parse_decimal(data, "swap")
    close_time = parse_time(data.get("close_time"), "close_time")
    open_time = parse_time(data.get("open_time"), "open_time")
    if close_price is not None:
        close_time = close_time or now
        open_time = open_time or close_time - timedelta(hours=1)
        if open_time > close_time:
            raise ControlError("open_time is after close_time")
    open_time = open_time or now
    opened = book.open_position(
        conn, server, account, spec, side, lots, open_price, open_time,
        sl=parse_decimal(data, "sl") or Decimal(0), tp=parse_decimal(data, "tp") or Decimal(0),
        commission=None if commission is None else -abs(commission), comment=str(data.get("comment") or ""),
    )  # fmt: skip
    if swap:
        conn.execute(
            update(db.positions).where(db.positions.c.position == opened["position"]).values(storage=money(swap))
        )
    result = {
        "server": server.key,
        "login": account.login,
        "order": opened["order"],
        "position": opened["position"],
        "deals": [opened["deal"]],
    }
    if close_price is None:
        return result
    position = conn.execute(select(db.positions).where(db.positions.c.position == opened["position"])).one()
    closed = book.close_position(
        conn, server, account, position, close_price, close_time, commission=0 if commission is not None else None
    )
    result.update(close_order=closed["order"], profit=text_money(closed["profit"]))
    result["deals"].append(closed["deal"])
    return result


def record_pending_order(conn, data):
    server, account, spec, lots, _quotes, now = trade_basics(conn, data)
    type_name = str(data.get("type", "")).upper()
    if type_name not in PENDING_TYPES:
        raise ControlError(f"type must be one of {', '.join(PENDING_TYPES)}")
    ticket = book.place_pending(
        conn, server, account, spec, type_name, lots, parse_decimal(data, "price", required=True), now,
        sl=parse_decimal(data, "sl") or Decimal(0), tp=parse_decimal(data, "tp") or Decimal(0),
        trigger=parse_decimal(data, "stop_limit_price"),
    )  # fmt: skip
    return {"server": server.key, "login": account.login, "order": ticket}
