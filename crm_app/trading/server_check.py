"""The admin's check of a trading server: what works and what does not, step by step.

A broker wiring a real MT5 server presses one button and reads, per step, whether it
worked and why not: the manager handshake, the server's clock and time zone, a read of
one user, and whether the logins the CRM will hand out are still free on the server.
Nothing is written to the trading server; the manager password never appears in an answer.
"""

import calendar
import time
from datetime import UTC, datetime

from flask import current_app
from sqlalchemy import func, select

from crm_app.admin.services import record_audit_log
from crm_app.common import crypto
from crm_app.common.errors import NotFound
from crm_app.extensions import db
from crm_app.integrations.trading import gateway as gw
from crm_app.trading.models import TradingAccount, TradingServer
from crm_app.trading.services import MANAGER_PASSWORD_PURPOSE

STEPS = ("handshake", "server_time", "user_read", "login_range")
# How many logins from `next_login` on are probed (and `last_login` too).
LOGIN_PROBES = 5
# A zone difference shows as whole quarter hours; a clock this far off ours is worth saying.
CLOCK_DRIFT_WARN_SECONDS = 120


def check_trading_server(server_id, login=None, actor=None, client=None):
    """Run every step against the server as configured; answers `{server_id, ok, steps}`.

    `login` is the user to read; by default the lowest login the CRM knows on the server,
    else the manager's own login. Steps after a failed handshake are skipped.
    """
    server = db.session.get(TradingServer, server_id)
    if server is None:
        raise NotFound()
    password = crypto.decrypt(server.manager_password_encrypted, MANAGER_PASSWORD_PURPOSE)
    timeout = current_app.config.get("TRADING_CHECK_TIMEOUT_SECONDS", 5)
    settings = {
        "base_url": server.base_url,
        "manager_login": server.manager_login,
        "manager_password": password,
        "timeout": timeout,
    }
    login = login or known_login(server)
    steps = []
    handshake = run_step("handshake", password, lambda: check_handshake(settings))
    steps.append(handshake)
    if handshake["ok"]:
        steps.append(run_step("server_time", password, lambda: check_server_time(settings, server.timezone)))
        steps.append(run_step("user_read", password, lambda: check_user_read(settings, server.timezone, login)))
        steps.append(run_step("login_range", password, lambda: check_login_range(settings, server)))
    else:
        steps.extend(skipped(name) for name in STEPS[1:])
    answer = {"server_id": server.id, "ok": all(step["ok"] for step in steps), "steps": steps}
    record_audit_log(
        "trading-servers.check",
        actor=actor,
        client=client,
        target_type="trading-servers",
        target_id=server.id,
        details={"ok": answer["ok"], "failed": [step["step"] for step in steps if not step["ok"]]},
    )
    db.session.commit()
    return answer


def known_login(server):
    lowest = db.session.scalar(select(func.min(TradingAccount.login)).where(TradingAccount.server_id == server.id))
    return lowest or server.manager_login


def skipped(name):
    return {"step": name, "ok": False, "skipped": True, "detail": "Skipped: the handshake failed.", "elapsed_ms": 0}


def run_step(name, password, work):
    started = time.monotonic()
    try:
        ok, detail, extra = work()
    except gw.TradingError as exc:
        ok, detail, extra = False, explain(exc), {}
    elapsed_ms = int((time.monotonic() - started) * 1000)
    # The adapter never puts the password in a message; this keeps it so whatever a server echoes.
    detail = detail.replace(password, "***") if password else detail
    return {"step": name, "ok": ok, "skipped": False, "detail": detail, "elapsed_ms": elapsed_ms, **extra}


def explain(exc):
    """What a broker's engineer should look at, then the server's own words."""
    if isinstance(exc, gw.PermissionDenied):
        return (
            "Refused by the trading server: check the manager login and password, the manager's "
            f"rights and its IP allow-list ({exc})."
        )
    if isinstance(exc, gw.TransientError):
        return f"Trading server unreachable or not answering: check base_url, the Web API port and firewalls ({exc})."
    return f"The trading server answered with an error ({exc})."


def make_gateway(settings, timezone):
    from crm_app.integrations.trading.mt5_webapi import MT5WebAPIGateway

    return MT5WebAPIGateway(timezone=timezone, **settings)


def check_handshake(settings):
    from crm_app.integrations.trading.mt5_webapi import PinnedSession

    gateway = make_gateway(settings, "UTC")
    # A session of its own: the check proves the handshake now, whatever the process's
    # pinned session (shared with live traffic) holds, and leaves that one alone.
    session = PinnedSession()
    try:
        gateway.handshake(session)
    finally:
        session.http.close()
    return True, f"Manager {settings['manager_login']} logged in; the server proved it knows the password.", {}


def offset_minutes(clock, moment):
    return (clock.to_server(moment) - calendar.timegm(moment.timetuple())) // 60


def format_offset(minutes):
    sign = "-" if minutes < 0 else "+"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def check_server_time(settings, configured_zone):
    from crm_app.integrations.trading.mt5_webapi import ServerClock

    now = datetime.now(UTC)
    server_clock = make_gateway(settings, None).clock  # asks the server for its TimeZone
    server_minutes = offset_minutes(server_clock, now)
    configured_minutes = offset_minutes(ServerClock(configured_zone), now)
    server_now = make_gateway(settings, configured_zone).server_time()
    drift = int((server_now - datetime.now(UTC)).total_seconds())
    detail = (
        f"Server time {server_now:%Y-%m-%d %H:%M:%S} UTC (read in the configured zone, {drift:+d} s from the CRM's "
        f"clock). The server's zone is {format_offset(server_minutes)}; the configured zone {configured_zone} is "
        f"{format_offset(configured_minutes)} now."
    )
    ok = server_minutes == configured_minutes
    if not ok:
        detail += " They differ: set the trading server's `timezone` to the server's zone, or times will be off."
    elif abs(drift) > CLOCK_DRIFT_WARN_SECONDS:
        detail += " The server's clock is off the CRM's: check both are synchronised (NTP)."
    return ok, detail, {}


def check_user_read(settings, zone, login):
    gateway = make_gateway(settings, zone)
    try:
        account = gateway.get_account(login)
    except gw.AccountNotFound:
        return True, f"Login {login} is not on the server (answered 'not found'): reading users works.", {}
    return True, f"Login {login} read: group {account.group}, leverage 1:{account.leverage}.", {}


def check_login_range(settings, server):
    if server.next_login > server.last_login:
        return False, f"The login range is used up (next {server.next_login} > last {server.last_login}).", {}
    gateway = make_gateway(settings, server.timezone)
    logins = list(range(server.next_login, min(server.next_login + LOGIN_PROBES, server.last_login + 1)))
    if server.last_login not in logins:
        logins.append(server.last_login)
    probes = []
    for login in logins:
        try:
            gateway.get_account(login)
        except gw.AccountNotFound:
            probes.append({"login": login, "state": "free"})
        else:
            probes.append({"login": login, "state": "taken"})
    taken = [probe["login"] for probe in probes if probe["state"] == "taken"]
    span = f"{server.next_login}..{server.last_login}"
    if taken:
        detail = (
            f"Logins {span}: {len(taken)} of {len(probes)} probed are already taken on the server "
            f"({', '.join(map(str, taken))}): move the range to logins the server does not use."
        )
    else:
        detail = f"Logins {span}: all {len(probes)} probed are free on the server."
    return not taken, detail, {"logins": probes}
