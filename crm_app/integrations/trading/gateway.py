"""The one way the CRM talks to a trading server (MT4/MT5), whatever the connector.

Every money change goes through `balance_operation` with a comment that carries
the operation's idempotency key (`<KIND>#<key>`, at most 31 characters), so that
`find_balance_operation` can tell after a lost answer whether it was applied.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol

PASSWORD_KINDS = ("main", "investor")
MAX_COMMENT_LENGTH = 31


# Errors -----------------------------------------------------------------------


class TradingError(Exception):
    """Base of every gateway error. `retcode` is the server's own code when known."""

    def __init__(self, message="", retcode=None):
        super().__init__(message or self.__class__.__name__)
        self.retcode = retcode


class TransientError(TradingError):
    """Not applied; safe to retry (connection refused, timeout before sending, busy)."""


class AmbiguousError(TradingError):
    """Sent, but the answer was lost: it may or may not have been applied. Reconcile."""


class PermissionDenied(TradingError):
    """The manager account may not do this (wrong manager password, missing right)."""


class ManagerLoginFailed(PermissionDenied):
    """The manager handshake was refused: wrong manager login or password, no API rights, or an
    address the server does not allow. (A server that cannot be reached is a TransientError.)"""


class BusinessError(TradingError):
    """The server refused on the merits; retrying the same call will not help."""


class NoMoney(BusinessError):
    """Not enough free margin or balance for the operation."""


class InvalidPassword(BusinessError):
    """A password does not meet the server's rules, or does not match."""


class AccountNotFound(BusinessError):
    pass


class AccountExists(BusinessError):
    pass


class InvalidRequest(BusinessError):
    """Bad parameters (unknown group, leverage not allowed, comment too long...)."""


# Values -----------------------------------------------------------------------


@dataclass(frozen=True)
class NewAccount:
    group: str
    name: str
    leverage: int
    main_password: str
    investor_password: str
    email: str = ""
    country: str = ""
    # 0: the server picks the next free login of the group's range.
    login: int = 0
    comment: str = ""


@dataclass(frozen=True)
class AccountInfo:
    login: int
    group: str
    name: str
    leverage: int
    email: str = ""
    comment: str = ""
    registration: datetime | None = None


@dataclass(frozen=True)
class TradeState:
    login: int
    currency: str
    balance: Decimal
    credit: Decimal
    equity: Decimal
    margin: Decimal
    margin_free: Decimal
    margin_level: Decimal
    read_at: datetime | None = None


@dataclass(frozen=True)
class Deal:
    ticket: int
    login: int
    time: datetime  # UTC
    action: str  # buy, sell, balance, credit, commission, ...
    entry: str  # in, out, inout, out_by, none
    symbol: str = ""
    volume: Decimal = Decimal("0")  # lots
    price: Decimal = Decimal("0")
    profit: Decimal = Decimal("0")
    commission: Decimal = Decimal("0")
    swap: Decimal = Decimal("0")
    position_id: int = 0
    order: int = 0
    comment: str = ""


@dataclass(frozen=True)
class Position:
    ticket: int
    login: int
    symbol: str
    side: str  # buy, sell
    volume: Decimal
    open_price: Decimal
    open_time: datetime
    current_price: Decimal
    sl: Decimal
    tp: Decimal
    profit: Decimal
    swap: Decimal
    commission: Decimal = Decimal("0")


@dataclass(frozen=True)
class PendingOrder:
    ticket: int
    login: int
    symbol: str
    type: str  # buy_limit, sell_limit, buy_stop, sell_stop, buy_stop_limit, sell_stop_limit
    volume: Decimal
    price: Decimal
    sl: Decimal
    tp: Decimal
    setup_time: datetime
    stop_limit_price: Decimal = Decimal("0")


@dataclass(frozen=True)
class ClosedOrder:
    """An order from the server's order history (MT5 keeps opening and closing orders apart)."""

    ticket: int
    login: int
    symbol: str
    type: str
    volume: Decimal
    price: Decimal
    setup_time: datetime
    done_time: datetime
    state: str
    position_id: int = 0
    extra: dict = field(default_factory=dict)


# The protocol -------------------------------------------------------------------


class TradingGateway(Protocol):
    def create_account(self, account: NewAccount) -> AccountInfo: ...

    def get_account(self, login: int) -> AccountInfo: ...

    def update_account(
        self, login: int, *, leverage: int | None = None, name: str | None = None, group: str | None = None
    ) -> AccountInfo: ...

    def check_password(self, login: int, password: str, kind: str = "main") -> bool: ...

    def change_password(self, login: int, password: str, kind: str = "main") -> None: ...

    def trade_state(self, login: int) -> TradeState: ...

    def balance_operation(self, login: int, amount: Decimal, comment: str, credit: bool = False) -> int:
        """Apply a balance (or credit) change; answers the deal ticket. NoMoney when refused."""
        ...

    def find_balance_operation(self, login: int, comment: str, since: datetime) -> Deal | None: ...

    def iter_deals(self, logins: list[int], start: datetime, end: datetime) -> Iterator[Deal]:
        """Deals of `logins` done from `start` to `end`, both included (to the server's second)."""
        ...

    def iter_closed_orders(self, logins: list[int], start: datetime, end: datetime) -> Iterator[ClosedOrder]:
        """History orders of `logins` done from `start` to `end`, both included."""
        ...

    def list_positions(self, logins: list[int]) -> list[Position]: ...

    def list_pending_orders(self, logins: list[int]) -> list[PendingOrder]: ...

    def server_time(self) -> datetime: ...


def operation_comment(kind, key):
    """`<KIND>#<key>` trimmed to what MT keeps (31 characters)."""
    comment = f"{kind.upper()}#{key}"
    if len(comment) > MAX_COMMENT_LENGTH:
        raise ValueError(f"comment {comment!r} is longer than {MAX_COMMENT_LENGTH} characters")
    return comment
