"""The MetaTrader 5 Web API (REST flavour) as a `TradingGateway`.

Wire facts this module relies on, from MetaQuotes' Web API reference:

- Manager auth is a two-step MD5 challenge: `GET /api/auth/start?version&agent&login&type=manager`
  answers `srv_rand`; `GET /api/auth/answer?srv_rand_answer&cli_rand` proves we know the password
  and answers `cli_rand_answer`, which proves the server knows it too. The password hash is
  MD5(MD5(password as UTF-16LE) + b"WebAPI"); each answer is MD5(hash + random bytes), in hex.
- Every answer carries `retcode` as "<number> <text>" ("0 Done", "3006 Invalid account password"),
  and every number in `answer` arrives as a string.
- Volumes are in 1/10000 lot (`VolumeExt`: 1/100000000 lot). Times are seconds since 1970 in the
  trade server's own time zone, not UTC.
- `trade/balance` comments keep 31 characters (32 with the terminator); longer ones are cut.

The server binds a manager session to one keep-alive connection (newer builds also set a
cookie), so each process keeps one pinned `requests.Session` per (server, manager) and sends
its calls one at a time.
"""

import calendar
import hashlib
import logging
import os
import re
import secrets
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import IntEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import requests
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError

from crm_app.integrations.trading.gateway import (
    MAX_COMMENT_LENGTH,
    PASSWORD_KINDS,
    AccountExists,
    AccountInfo,
    AccountNotFound,
    AmbiguousError,
    BusinessError,
    ClosedOrder,
    Deal,
    InvalidPassword,
    InvalidRequest,
    ManagerLoginFailed,
    NewAccount,
    NoMoney,
    PendingOrder,
    PermissionDenied,
    Position,
    TradeState,
    TradingError,
    TransientError,
)

log = logging.getLogger(__name__)

# "any number but not less than 484" per the auth/start reference; we announce a modern build.
WEB_API_VERSION = 4330
DEFAULT_AGENT = "crm"
LOTS_PER_VOLUME_UNIT = Decimal("0.0001")
LOTS_PER_VOLUME_EXT_UNIT = Decimal("0.00000001")
LOGINS_PER_REQUEST = 100
UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class MTRetcode(IntEnum):
    """The MT_RET_* codes this adapter reacts to (MetaTrader 5 API, EnMTAPIRetcode)."""

    OK = 0
    OK_NONE = 1
    ERROR = 2
    ERR_PARAMS = 3
    ERR_DATA = 4
    ERR_DISK = 5
    ERR_MEM = 6
    ERR_NETWORK = 7
    ERR_PERMISSIONS = 8
    ERR_TIMEOUT = 9
    ERR_CONNECTION = 10
    ERR_NOSERVICE = 11
    ERR_FREQUENT = 12
    ERR_NOTFOUND = 13
    ERR_SHUTDOWN = 15
    ERR_DUPLICATE = 17
    AUTH_CLIENT_INVALID = 1000
    AUTH_ACCOUNT_INVALID = 1001
    AUTH_ACCOUNT_DISABLED = 1002
    AUTH_SERVER_BAD = 1008
    AUTH_CLIENT_OLD = 1010
    AUTH_MANAGER_NOCONFIG = 1011
    AUTH_MANAGER_IPBLOCK = 1012
    AUTH_SERVER_BUSY = 1018
    AUTH_ACCOUNT_UNKNOWN = 1020
    USR_LOGIN_EXHAUSTED = 3002
    USR_LOGIN_PROHIBITED = 3003
    USR_LOGIN_EXIST = 3004
    USR_INVALID_PASSWORD = 3006
    TRADE_MAX_MONEY = 4005
    REQUEST_REJECT = 10006
    REQUEST_TIMEOUT = 10012
    REQUEST_INVALID = 10013
    REQUEST_INVALID_VOLUME = 10014
    REQUEST_INVALID_PRICE = 10015
    REQUEST_INVALID_STOPS = 10016
    REQUEST_TRADE_DISABLED = 10017
    REQUEST_MARKET_CLOSED = 10018
    REQUEST_NO_MONEY = 10019
    REQUEST_TOO_MANY = 10024
    REQUEST_CONNECTION = 10031
    ERR_DEADLOCK = 12003
    ERR_LOCKED = 12004


# The server is up but could not do it now: nothing was applied, try again later.
TRANSIENT_RETCODES = {
    MTRetcode.ERROR,
    MTRetcode.ERR_DISK,
    MTRetcode.ERR_MEM,
    MTRetcode.ERR_NETWORK,
    MTRetcode.ERR_CONNECTION,
    MTRetcode.ERR_NOSERVICE,
    MTRetcode.ERR_FREQUENT,
    MTRetcode.ERR_SHUTDOWN,
    MTRetcode.AUTH_SERVER_BUSY,
    MTRetcode.REQUEST_TOO_MANY,
    MTRetcode.REQUEST_CONNECTION,
    MTRetcode.ERR_DEADLOCK,
    MTRetcode.ERR_LOCKED,
}
# The server gave up waiting on something it had started: a write may have happened.
TIMEOUT_RETCODES = {MTRetcode.ERR_TIMEOUT, MTRetcode.REQUEST_TIMEOUT}
PERMISSION_RETCODES = {
    MTRetcode.ERR_PERMISSIONS,
    MTRetcode.AUTH_CLIENT_INVALID,
    MTRetcode.AUTH_ACCOUNT_INVALID,
    MTRetcode.AUTH_ACCOUNT_DISABLED,
    MTRetcode.AUTH_SERVER_BAD,
    MTRetcode.AUTH_CLIENT_OLD,
    MTRetcode.AUTH_MANAGER_NOCONFIG,
    MTRetcode.AUTH_MANAGER_IPBLOCK,
    MTRetcode.AUTH_ACCOUNT_UNKNOWN,
}
INVALID_REQUEST_RETCODES = {
    MTRetcode.ERR_PARAMS,
    MTRetcode.ERR_DATA,
    MTRetcode.ERR_DUPLICATE,
    MTRetcode.USR_LOGIN_PROHIBITED,
    MTRetcode.TRADE_MAX_MONEY,
    MTRetcode.REQUEST_INVALID,
    MTRetcode.REQUEST_INVALID_VOLUME,
    MTRetcode.REQUEST_INVALID_PRICE,
    MTRetcode.REQUEST_INVALID_STOPS,
}

DEAL_ACTIONS = {
    0: "buy",
    1: "sell",
    2: "balance",
    3: "credit",
    4: "charge",
    5: "correction",
    6: "bonus",
    7: "commission",
    8: "commission_daily",
    9: "commission_monthly",
    10: "agent_daily",
    11: "agent_monthly",
    12: "interest",
    13: "buy_canceled",
    14: "sell_canceled",
    15: "dividend",
    16: "dividend_franked",
    17: "tax",
    18: "agent",
    19: "so_compensation",
    20: "so_compensation_credit",
}
TRADE_DEAL_ACTIONS = {"buy", "sell", "buy_canceled", "sell_canceled"}
DEAL_ENTRIES = {0: "in", 1: "out", 2: "inout", 3: "out_by"}
ORDER_TYPES = {
    0: "buy",
    1: "sell",
    2: "buy_limit",
    3: "sell_limit",
    4: "buy_stop",
    5: "sell_stop",
    6: "buy_stop_limit",
    7: "sell_stop_limit",
    8: "close_by",
}
ORDER_STATES = {
    0: "started",
    1: "placed",
    2: "canceled",
    3: "partial",
    4: "filled",
    5: "rejected",
    6: "expired",
    7: "request_add",
    8: "request_modify",
    9: "request_cancel",
}
BALANCE_DEAL_TYPE = 2
CREDIT_DEAL_TYPE = 3


# The handshake ----------------------------------------------------------------------


def manager_password_hash(password):
    """MD5(MD5(password as UTF-16LE) + "WebAPI"): the secret both sides derive answers from."""
    inner = hashlib.md5(password.encode("utf-16-le"), usedforsecurity=False).digest()
    return hashlib.md5(inner + b"WebAPI", usedforsecurity=False).digest()


def challenge_answer(password_hash, random_hex):
    """MD5(password hash + the other side's random bytes), in lower-case hex."""
    return hashlib.md5(password_hash + bytes.fromhex(random_hex), usedforsecurity=False).hexdigest()


# Server time ---------------------------------------------------------------------------


class ServerClock:
    """Converts between UTC and MT "server time" (Unix seconds read on the server's wall clock).

    `timezone` is minutes east of UTC (MT's own `TimeZone` setting), an offset string such as
    "+02:00" or "UTC+3", or an IANA zone name ("Europe/Nicosia") when the server follows DST.
    """

    OFFSET_PATTERN = re.compile(r"^(?:UTC|GMT)?\s*([+-])(\d{1,2})(?::?(\d{2}))?$", re.IGNORECASE)

    def __init__(self, timezone):
        self.zone = None
        self.offset = timedelta(0)
        if isinstance(timezone, int):
            self.offset = timedelta(minutes=timezone)
            return
        text = str(timezone).strip()
        if re.fullmatch(r"[+-]?\d+", text):
            self.offset = timedelta(minutes=int(text))
            return
        match = self.OFFSET_PATTERN.match(text)
        if match:
            sign = -1 if match.group(1) == "-" else 1
            self.offset = sign * timedelta(hours=int(match.group(2)), minutes=int(match.group(3) or 0))
            return
        try:
            self.zone = ZoneInfo(text)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown trading-server time zone {timezone!r}") from exc

    def to_utc(self, server_seconds):
        wall = datetime(1970, 1, 1) + timedelta(seconds=int(server_seconds))
        if self.zone is not None:
            return wall.replace(tzinfo=self.zone).astimezone(UTC)
        return (wall - self.offset).replace(tzinfo=UTC)

    def to_server(self, moment):
        moment = as_utc(moment)
        wall = moment.astimezone(self.zone).replace(tzinfo=None) if self.zone else (moment + self.offset)
        return calendar.timegm(wall.replace(tzinfo=None).timetuple())


def as_utc(moment):
    """Naive datetimes are UTC in this project (see common.timeutil)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# Parsing the wire's strings ---------------------------------------------------------------


def to_decimal(value):
    if value in (None, ""):
        return Decimal("0")
    try:
        return Decimal(str(value))
    except InvalidOperation as exc:
        raise TradingError(f"not a number on the wire: {value!r}") from exc


def to_int(value):
    return int(to_decimal(value))


def lots_from(record, volume_key="Volume", volume_ext_key="VolumeExt"):
    """Lots from MT volume units, preferring the extended-precision field when the server sends it."""
    volume_ext = to_int(record.get(volume_ext_key))
    if volume_ext:
        lots = volume_ext * LOTS_PER_VOLUME_EXT_UNIT
    else:
        lots = to_int(record.get(volume_key)) * LOTS_PER_VOLUME_UNIT
    hundredths = lots.quantize(Decimal("0.01"))
    return hundredths if hundredths == lots else lots.quantize(LOTS_PER_VOLUME_EXT_UNIT)


def parse_retcode(answer):
    """The number in "13 Not found"; a missing retcode is a protocol error."""
    raw = str(answer.get("retcode", "")).strip()
    match = re.match(r"^(-?\d+)", raw)
    if not match:
        raise TradingError(f"answer without a retcode: {raw!r}")
    return int(match.group(1)), raw


def error_for_retcode(code, text, *, write=False):
    """The typed gateway error for a failing MT retcode."""
    if code == MTRetcode.REQUEST_NO_MONEY:
        return NoMoney(text, retcode=code)
    if code == MTRetcode.USR_INVALID_PASSWORD:
        return InvalidPassword(text, retcode=code)
    if code == MTRetcode.ERR_NOTFOUND:
        return AccountNotFound(text, retcode=code)
    if code == MTRetcode.USR_LOGIN_EXIST:
        return AccountExists(text, retcode=code)
    if code in PERMISSION_RETCODES:
        return PermissionDenied(text, retcode=code)
    if code in INVALID_REQUEST_RETCODES:
        return InvalidRequest(text, retcode=code)
    if code in TIMEOUT_RETCODES:
        return (AmbiguousError if write else TransientError)(text, retcode=code)
    if code in TRANSIENT_RETCODES:
        return TransientError(text, retcode=code)
    return BusinessError(text, retcode=code)


def failed_before_sending(exc):
    """True when the request never reached the server (refused, unresolvable, connect timeout)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.SSLError):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError):
        reason = exc.args[0] if exc.args else None
        if isinstance(reason, MaxRetryError):
            reason = reason.reason
        return isinstance(reason, NewConnectionError | ConnectTimeoutError)
    return False


# One pinned session per process and server ---------------------------------------------------


class PinnedSession:
    """A keep-alive HTTP session and the manager login it carries; calls go through it one at a time."""

    def __init__(self):
        self.lock = threading.RLock()
        self.http = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=1, max_retries=0)
        self.http.mount("http://", adapter)
        self.http.mount("https://", adapter)
        self.http.headers.update({"Connection": "keep-alive", "User-Agent": "MetaTrader 5 Web API/5 (crm)"})
        self.authenticated_as = None  # fingerprint of the credentials the session was opened with
        self.currency_by_login = {}  # MT5 never moves an account to a group of another currency
        self.currency_by_group = {}  # "" for a group the manager may not read

    def forget_login(self):
        self.authenticated_as = None
        self.http.cookies.clear()


_registry_lock = threading.Lock()
_registry_pid = os.getpid()
_sessions = {}


def pinned_session(base_url, manager_login):
    """The session of this process for that server and manager; a forked child starts afresh."""
    global _registry_pid, _registry_lock, _sessions
    if os.getpid() != _registry_pid:
        # Sockets and locks inherited from the parent belong to the parent: do not touch them.
        _registry_lock = threading.Lock()
        _sessions = {}
        _registry_pid = os.getpid()
    key = (base_url, int(manager_login))
    with _registry_lock:
        session = _sessions.get(key)
        if session is None:
            session = _sessions[key] = PinnedSession()
        return session


def forget_pinned_sessions():
    """Close every pinned session of this process (tests, and shutdown hooks)."""
    with _registry_lock:
        for session in _sessions.values():
            session.http.close()
        _sessions.clear()


# The gateway -------------------------------------------------------------------------------


class MT5WebAPIGateway:
    """TradingGateway over the MT5 Web API.

    `timezone` is the server's time zone (minutes east of UTC, an offset string or an IANA
    name); None asks the server once (`/api/time/get`, no DST). `timeout` bounds each HTTP
    call; `window_seconds` is the size of the time slices deal and history queries are cut into.
    """

    def __init__(
        self,
        base_url,
        manager_login,
        manager_password,
        timezone=None,
        timeout=10.0,
        window_seconds=86400,
        connect_timeout=None,
        agent=DEFAULT_AGENT,
    ):
        if " " in agent or not agent:
            raise ValueError("the MT5 agent name must be non-empty and without spaces")
        self.base_url = base_url.rstrip("/")
        self.manager_login = int(manager_login)
        self._password_hash = manager_password_hash(manager_password)
        self._clock = ServerClock(timezone) if timezone is not None else None
        self.timeout = (float(connect_timeout or min(float(timeout), 5.0)), float(timeout))
        self.window = timedelta(seconds=int(window_seconds))
        self.agent = agent

    def __repr__(self):
        return f"MT5WebAPIGateway({self.base_url!r}, manager_login={self.manager_login})"

    # Accounts ------------------------------------------------------------------------

    def create_account(self, account: NewAccount) -> AccountInfo:
        record = {
            "Login": str(account.login or 0),
            "Group": account.group,
            "Name": account.name,
            "Leverage": str(account.leverage),
            "Email": account.email,
            "Country": account.country,
            "Comment": account.comment,
            # In the body, never the query string: URLs end up in proxy logs.
            "PassMain": account.main_password,
            "PassInvestor": account.investor_password,
        }
        answer = self._call("POST", "/api/user/add", body=record, write=True)
        return self._account_info(answer)

    def get_account(self, login) -> AccountInfo:
        return self._account_info(self._call("GET", "/api/user/get", params={"login": int(login)}))

    def update_account(self, login, *, leverage=None, name=None, group=None) -> AccountInfo:
        changes = {"Login": str(int(login))}
        if leverage is not None:
            changes["Leverage"] = str(int(leverage))
        if name is not None:
            changes["Name"] = name
        if group is not None:
            changes["Group"] = group
        # Setting the same values twice leaves the same record: safe to repeat.
        answer = self._call("POST", "/api/user/update", params={"login": int(login)}, body=changes)
        return self._account_info(answer)

    def check_password(self, login, password, kind="main") -> bool:
        self._check_kind(kind)
        body = {"Login": str(int(login)), "Type": kind, "Password": password}
        try:
            self._call("POST", "/api/user/check_password", body=body)
        except InvalidPassword:
            return False
        return True

    def change_password(self, login, password, kind="main") -> None:
        self._check_kind(kind)
        body = {"Login": str(int(login)), "Type": kind, "Password": password}
        self._call("POST", "/api/user/change_password", body=body)

    def trade_state(self, login) -> TradeState:
        answer = self._call("GET", "/api/user/account/get", params={"login": int(login)})
        return TradeState(
            login=to_int(answer.get("Login") or login),
            currency=answer.get("Currency") or self._currency_of(int(login)),
            balance=to_decimal(answer.get("Balance")),
            credit=to_decimal(answer.get("Credit")),
            equity=to_decimal(answer.get("Equity")),
            margin=to_decimal(answer.get("Margin")),
            margin_free=to_decimal(answer.get("MarginFree")),
            margin_level=to_decimal(answer.get("MarginLevel")),
            read_at=datetime.now(UTC),
        )

    # Money ---------------------------------------------------------------------------

    def balance_operation(self, login, amount, comment, credit=False) -> int:
        """Deposit (amount > 0) or withdraw (amount < 0); answers the deal ticket.

        Never retried after sending: a lost answer is AmbiguousError, settled later with
        `find_balance_operation(login, comment, ...)`.
        """
        amount = Decimal(str(amount))  # str(): a float's binary expansion is not an amount
        if not amount:
            raise InvalidRequest("a balance operation needs a non-zero amount")
        if len(comment) > MAX_COMMENT_LENGTH:
            # The server would cut it, and the cut comment could no longer find the operation.
            raise InvalidRequest(f"comment longer than {MAX_COMMENT_LENGTH} characters: {comment!r}")
        params = {
            "login": int(login),
            "type": CREDIT_DEAL_TYPE if credit else BALANCE_DEAL_TYPE,
            "balance": format(amount, "f"),
            "comment": comment,
            "check_margin": 1,
        }
        answer = self._call("POST", "/api/trade/balance", params=params, write=True)
        ticket = (answer.get("Ticket") or answer.get("ticket")) if isinstance(answer, dict) else None
        if not ticket:
            raise AmbiguousError("the server accepted the balance operation but sent no deal ticket")
        return to_int(ticket)

    def find_balance_operation(self, login, comment, since) -> Deal | None:
        """The balance or credit deal of `login` carrying exactly `comment`, made since `since`.

        The search starts five minutes early and ends at the later of our clock and the server's,
        because the deal carries the server's time stamp, not ours.
        """
        # The server's clock is the one that stamped the deal; it may run ahead of ours.
        until = max(datetime.now(UTC), self.server_time()) + timedelta(minutes=5)
        for deal in self.iter_deals([login], as_utc(since) - timedelta(minutes=5), until):
            if deal.action in ("balance", "credit") and deal.comment == comment:
                return deal
        return None

    # Trading data ---------------------------------------------------------------------

    def iter_deals(self, logins, start, end) -> Iterator[Deal]:
        for record in self._iter_windowed("/api/deal/get_batch", logins, start, end):
            yield self._deal(record)

    def iter_closed_orders(self, logins, start, end) -> Iterator[ClosedOrder]:
        for record in self._iter_windowed("/api/history/get_batch", logins, start, end):
            yield self._closed_order(record)

    def list_positions(self, logins) -> list[Position]:
        return [self._position(record) for record in self._batches("/api/position/get_batch", logins)]

    def list_pending_orders(self, logins) -> list[PendingOrder]:
        records = self._batches("/api/order/get_batch", logins)
        return [self._pending_order(record) for record in records if to_int(record.get("Type")) >= 2]

    def server_time(self) -> datetime:
        answer = self._call("GET", "/api/time/server")
        raw = str(answer.get("Time") or answer.get("time") or "").split()
        if not raw:
            raise TradingError("the server time answer carries no time")
        return self.clock.to_utc(int(raw[0]))

    # Internals -----------------------------------------------------------------------

    @property
    def clock(self):
        if self._clock is None:
            settings = self._call("GET", "/api/time/get")
            self._clock = ServerClock(to_int(settings.get("TimeZone")))
        return self._clock

    def _check_kind(self, kind):
        if kind not in PASSWORD_KINDS:
            raise InvalidRequest(f"password kind must be one of {PASSWORD_KINDS}, not {kind!r}")

    def _currency_of(self, login):
        """Deposit currency of an account (its group's), remembered for the life of the process.

        Some manager accounts may not read group configuration, and some peers do not serve
        /api/group/get: then the currency is "" (unknown, remembered per group) and the caller
        uses what it knows (the account type's currency); the figures never fail for it.
        """
        session = pinned_session(self.base_url, self.manager_login)
        known = session.currency_by_login
        if login not in known:
            group = self._call("GET", "/api/user/get", params={"login": login}).get("Group", "")
            if group not in session.currency_by_group:
                try:
                    settings = self._call("GET", "/api/group/get", params={"group": group})
                except TradingError as exc:
                    if isinstance(exc, TransientError | AmbiguousError):
                        raise
                    log.info("MT5 %s: group %r not readable (%s); currency left to caller", self.base_url, group, exc)
                    settings = {}
                session.currency_by_group[group] = settings.get("Currency", "")
            known[login] = session.currency_by_group[group]
        return known[login]

    def _windows(self, start, end):
        start, end = as_utc(start), as_utc(end)
        while start < end:
            stop = min(start + self.window, end)
            yield start, stop
            start = stop

    def _iter_windowed(self, path, logins, start, end):
        """Records of `logins` from `start` to `end`, both included, one time window at a time.

        MT's from/to are whole seconds and include both ends. Windows inside the range meet
        without overlapping (`to` is the next one's `from` - 1); the last one ends at `end`'s
        second, included: a deal done in the very second the caller read the server's clock
        belongs to this read, not to the next one.
        """
        windows = list(self._windows(start, end))
        for index, (window_start, window_end) in enumerate(windows):
            last = index == len(windows) - 1
            params = {
                "from": self.clock.to_server(window_start),
                "to": self.clock.to_server(window_end) - (0 if last else 1),
            }
            records = self._batches(path, logins, params)
            yield from sorted(records, key=lambda r: (to_int(r.get("Time") or r.get("TimeDone")), self._ticket(r)))

    def _batches(self, path, logins, extra_params=None):
        logins = [int(login) for login in logins]
        records = []
        for index in range(0, len(logins), LOGINS_PER_REQUEST):
            chunk = logins[index : index + LOGINS_PER_REQUEST]
            params = {"login": ",".join(str(login) for login in chunk), **(extra_params or {})}
            try:
                answer = self._call("GET", path, params=params)
            except AccountNotFound:
                answer = []  # some builds answer "13 Not found" instead of an empty list
            records.extend(answer or [])
        return records

    @staticmethod
    def _ticket(record):
        return to_int(record.get("Deal") or record.get("Order") or record.get("Position"))

    def _call(self, method, path, *, params=None, body=None, write=False):
        """One API call through the pinned session: login when needed, map failures to typed errors.

        MetaQuotes do not document what a server answers once our session is gone (idle
        timeout, restart, a load balancer moving the connection): some answer HTTP 403, others
        retcode 8 (MT_RET_ERR_PERMISSIONS). Either, on a session that had worked, means "session
        lost": the server refused the call outright, so logging in again and sending it once
        more is safe even for writes. The same answer right after a fresh login is a real
        refusal. A write whose answer was lost is never resent (AmbiguousError, see `_send`).
        """
        session = pinned_session(self.base_url, self.manager_login)
        with session.lock:
            for attempt in (1, 2):
                had_worked = session.authenticated_as == self._password_hash
                if not had_worked:
                    self._login(session)
                response = self._send(session, method, path, params=params, body=body, write=write)
                lost = self._session_lost(response)
                if lost:
                    session.forget_login()
                    if attempt == 1 and had_worked:
                        log.info("MT5 session for %s lost (%s), logging in again", self.base_url, lost)
                        continue
                    if response.status_code == 403:
                        raise PermissionDenied(f"{path}: the server refused the manager session (HTTP 403)")
                return self._answer_of(response, path, write=write)
        raise AssertionError("unreachable")

    @staticmethod
    def _session_lost(response):
        """ "HTTP 403" or "retcode 8" when the answer may mean our session is gone, else None."""
        if response.status_code == 403:
            return "HTTP 403"
        if response.status_code != 200:
            return None
        try:
            payload = response.json()
            code, _text = parse_retcode(payload)
        except (ValueError, AttributeError, TradingError):
            return None
        return "retcode 8" if code == MTRetcode.ERR_PERMISSIONS else None

    def _send(self, session, method, path, *, params=None, body=None, write=False):
        url = self.base_url + path
        for attempt in (1, 2):
            try:
                return session.http.request(method, url, params=params, json=body, timeout=self.timeout)
            except requests.exceptions.RequestException as exc:
                failure = exc.__class__.__name__
                if failed_before_sending(exc):
                    raise TransientError(f"{path}: could not reach the trading server ({failure})") from exc
                if write:
                    raise AmbiguousError(f"{path}: sent, but the answer was lost ({failure})") from exc
                if attempt == 1 and not isinstance(exc, requests.exceptions.Timeout):
                    continue  # a read on a connection the server had just closed: once more
                raise TransientError(f"{path}: no answer from the trading server ({failure})") from exc
        raise AssertionError("unreachable")

    def _answer_of(self, response, path, *, write):
        if response.status_code in (404, 501) and not write:
            # The peer does not serve this read (writes keep the rules below: never guessed).
            raise InvalidRequest(f"{path}: not supported by the trading server (HTTP {response.status_code})")
        if response.status_code >= 500:
            error = AmbiguousError if write and response.status_code != 503 else TransientError
            raise error(f"{path}: HTTP {response.status_code} from the trading server")
        if response.status_code != 200:
            raise TradingError(f"{path}: unexpected HTTP {response.status_code}")
        garbled = AmbiguousError if write else TransientError
        try:
            payload = response.json()
        except ValueError as exc:
            raise garbled(f"{path}: the answer is not JSON") from exc
        if not isinstance(payload, dict) or "retcode" not in payload:
            raise garbled(f"{path}: the answer carries no retcode")
        code, text = parse_retcode(payload)
        if code not in (MTRetcode.OK, MTRetcode.OK_NONE):
            raise error_for_retcode(code, f"{path}: {text}", write=write)
        return payload.get("answer", {})

    def handshake(self, session):
        """Run the manager handshake on `session` (a check of the server's set-up uses one of its own)."""
        self._login(session)

    def _login(self, session):
        """The manager handshake, its failure named: a refusal is ManagerLoginFailed (password,
        rights, IP allow-list), a server that cannot be reached or answers nonsense a TransientError."""
        try:
            self._handshake(session)
        except PermissionDenied as exc:
            raise ManagerLoginFailed(
                f"manager login {self.manager_login} refused by the trading server "
                f"(wrong manager password or login, or no Web API rights): {exc}",
                retcode=exc.retcode,
            ) from exc
        except TransientError as exc:
            raise TransientError(
                f"manager login {self.manager_login}: the trading server is unreachable: {exc}", retcode=exc.retcode
            ) from exc

    def _handshake(self, session):
        """The manager handshake; afterwards the server has proven it knows our password too."""
        session.forget_login()
        start = self._auth_step(
            session,
            "/api/auth/start",
            {"version": WEB_API_VERSION, "agent": self.agent, "login": self.manager_login, "type": "manager"},
        )
        srv_rand = start.get("srv_rand", "")
        cli_rand = secrets.token_hex(16)
        try:
            srv_rand_answer = challenge_answer(self._password_hash, srv_rand)
        except ValueError as exc:
            raise TradingError(f"auth/start sent an unusable srv_rand: {srv_rand!r}") from exc
        answer = self._auth_step(
            session, "/api/auth/answer", {"srv_rand_answer": srv_rand_answer, "cli_rand": cli_rand}
        )
        if answer.get("cli_rand_answer", "").lower() != challenge_answer(self._password_hash, cli_rand):
            raise PermissionDenied(
                "the trading server could not prove it knows the manager password", retcode=MTRetcode.AUTH_SERVER_BAD
            )
        session.authenticated_as = self._password_hash

    def _auth_step(self, session, path, params):
        response = self._send(session, "GET", path, params=params)
        if response.status_code in (401, 403):
            raise PermissionDenied(f"{path}: HTTP {response.status_code}")
        if response.status_code != 200:
            raise TransientError(f"{path}: HTTP {response.status_code}")
        try:
            payload = response.json()
        except ValueError as exc:
            raise TransientError(f"{path}: the answer is not JSON") from exc
        code, text = parse_retcode(payload)
        if code != MTRetcode.OK:
            error = error_for_retcode(code, f"{path}: {text}")
            if isinstance(error, BusinessError):
                # Whatever stops a manager login is a permission problem for the caller.
                error = PermissionDenied(str(error), retcode=code)
            raise error
        return payload

    # Records -> values -------------------------------------------------------------------

    def _account_info(self, record):
        registration = to_int(record.get("Registration"))
        return AccountInfo(
            login=to_int(record.get("Login")),
            group=record.get("Group", ""),
            name=record.get("Name", ""),
            leverage=to_int(record.get("Leverage")),
            email=record.get("Email", ""),
            comment=record.get("Comment", ""),
            registration=self.clock.to_utc(registration) if registration else None,
        )

    def _deal(self, record):
        action = DEAL_ACTIONS.get(to_int(record.get("Action")), f"action_{record.get('Action')}")
        entry = DEAL_ENTRIES.get(to_int(record.get("Entry")), "none") if action in TRADE_DEAL_ACTIONS else "none"
        return Deal(
            ticket=to_int(record.get("Deal")),
            login=to_int(record.get("Login")),
            time=self.clock.to_utc(to_int(record.get("Time"))),
            action=action,
            entry=entry,
            symbol=record.get("Symbol", ""),
            volume=lots_from(record),
            price=to_decimal(record.get("Price")),
            profit=to_decimal(record.get("Profit")),
            commission=to_decimal(record.get("Commission")),
            swap=to_decimal(record.get("Storage")),
            position_id=to_int(record.get("PositionID")),
            order=to_int(record.get("Order")),
            comment=record.get("Comment", ""),
        )

    def _position(self, record):
        return Position(
            ticket=to_int(record.get("Position")),
            login=to_int(record.get("Login")),
            symbol=record.get("Symbol", ""),
            side="buy" if to_int(record.get("Action")) == 0 else "sell",
            volume=lots_from(record),
            open_price=to_decimal(record.get("PriceOpen")),
            open_time=self.clock.to_utc(to_int(record.get("TimeCreate"))),
            current_price=to_decimal(record.get("PriceCurrent")),
            sl=to_decimal(record.get("PriceSL")),
            tp=to_decimal(record.get("PriceTP")),
            profit=to_decimal(record.get("Profit")),
            swap=to_decimal(record.get("Storage")),
            commission=to_decimal(record.get("Commission")),
        )

    def _pending_order(self, record):
        return PendingOrder(
            ticket=to_int(record.get("Order")),
            login=to_int(record.get("Login")),
            symbol=record.get("Symbol", ""),
            type=ORDER_TYPES.get(to_int(record.get("Type")), f"type_{record.get('Type')}"),
            volume=lots_from(record, "VolumeCurrent", "VolumeCurrentExt"),
            price=to_decimal(record.get("PriceOrder")),
            sl=to_decimal(record.get("PriceSL")),
            tp=to_decimal(record.get("PriceTP")),
            setup_time=self.clock.to_utc(to_int(record.get("TimeSetup"))),
            stop_limit_price=to_decimal(record.get("PriceTrigger")),
        )

    def _closed_order(self, record):
        price = to_decimal(record.get("PriceOrder")) or to_decimal(record.get("PriceCurrent"))
        return ClosedOrder(
            ticket=to_int(record.get("Order")),
            login=to_int(record.get("Login")),
            symbol=record.get("Symbol", ""),
            type=ORDER_TYPES.get(to_int(record.get("Type")), f"type_{record.get('Type')}"),
            volume=lots_from(record, "VolumeInitial", "VolumeInitialExt"),
            price=price,
            setup_time=self.clock.to_utc(to_int(record.get("TimeSetup"))),
            done_time=self.clock.to_utc(to_int(record.get("TimeDone"))),
            state=ORDER_STATES.get(to_int(record.get("State")), f"state_{record.get('State')}"),
            position_id=to_int(record.get("PositionID")),
            extra={
                "reason": to_int(record.get("Reason")),
                "comment": record.get("Comment", ""),
                "sl": to_decimal(record.get("PriceSL")),
                "tp": to_decimal(record.get("PriceTP")),
                "price_current": to_decimal(record.get("PriceCurrent")),
            },
        )
