"""What the simulator says on the wire: MT retcodes, the manager handshake, number formats.

Written independently of the adapter (`mt5_webapi`) on purpose: if both shared one
implementation of the handshake or the retcode table, a bug in it would pass every test.
"""

import hashlib
from decimal import ROUND_HALF_UP, Decimal

# MT_RET_* from the MetaTrader 5 API headers (EnMTAPIRetcode), with the server's texts.
RETCODE_TEXTS = {
    0: "Done",
    1: "OK, no data",
    2: "Common error",
    3: "Invalid parameters",
    4: "Invalid data",
    8: "Not enough permissions",
    9: "Operation timeout",
    10: "No connection",
    11: "Service is not available",
    12: "Too frequent requests",
    13: "Not found",
    1000: "Invalid terminal type",
    1001: "Invalid account",
    1010: "Client has old version",
    1018: "Server is busy",
    3002: "Logins range exhausted",
    3004: "Account already exists",
    3006: "Invalid account password",
    3010: "Attempt to move account to different currency group",
    4005: "Money limit reached",
    10013: "Invalid request",
    10014: "Invalid volume",
    10015: "Invalid price",
    10016: "Invalid stops or price",
    10019: "Not enough money",
}

OK = 0
ERR_PARAMS = 3
ERR_PERMISSIONS = 8
ERR_NOSERVICE = 11
ERR_FREQUENT = 12
ERR_NOTFOUND = 13
AUTH_CLIENT_INVALID = 1000
AUTH_ACCOUNT_INVALID = 1001
AUTH_CLIENT_OLD = 1010
USR_LOGIN_EXHAUSTED = 3002
USR_LOGIN_EXIST = 3004
USR_INVALID_PASSWORD = 3006
USR_DIFFERENT_CURRENCY = 3010
TRADE_MAX_MONEY = 4005
REQUEST_INVALID_VOLUME = 10014
REQUEST_INVALID_PRICE = 10015
REQUEST_INVALID_STOPS = 10016
REQUEST_NO_MONEY = 10019

# EnDealAction, EnDealEntry, EnDealReason, EnOrderType, EnOrderState (IMTDeal / IMTOrder).
DEAL_BUY, DEAL_SELL, DEAL_BALANCE, DEAL_CREDIT = 0, 1, 2, 3
ENTRY_IN, ENTRY_OUT = 0, 1
REASON_CLIENT, REASON_EXPERT, REASON_DEALER, REASON_SL, REASON_TP, REASON_SO = 0, 1, 2, 3, 4, 5
OP_BUY, OP_SELL = 0, 1
PENDING_TYPES = {
    "BUY_LIMIT": 2,
    "SELL_LIMIT": 3,
    "BUY_STOP": 4,
    "SELL_STOP": 5,
    "BUY_STOP_LIMIT": 6,
    "SELL_STOP_LIMIT": 7,
}
STATE_PLACED, STATE_CANCELED, STATE_FILLED, STATE_EXPIRED = 1, 2, 4, 6

# The smallest Web API version the auth/start reference accepts.
MIN_WEB_API_VERSION = 484
VOLUME_EXT_PER_LOT = 100_000_000
MAX_BALANCE_OPERATION = Decimal("1000000000")
MONEY_STEP = Decimal("0.01")


class MTError(Exception):
    """A refusal the server answers with `retcode` (HTTP 200), as MT does."""

    def __init__(self, code, detail=""):
        super().__init__(detail or RETCODE_TEXTS.get(code, "Error"))
        self.code = code
        self.detail = detail


def retcode(code):
    return f"{code} {RETCODE_TEXTS.get(code, 'Error')}"


def password_hash_hex(password):
    """The hash an MT server keeps for a password: MD5(MD5(UTF-16LE password) + "WebAPI")."""
    first = hashlib.md5(password.encode("utf-16-le"), usedforsecurity=False).digest()
    return hashlib.md5(first + b"WebAPI", usedforsecurity=False).hexdigest()


def proof_of_password(password_hash_hex_value, random_hex):
    """MD5(password hash bytes + random bytes): what each side answers the other's challenge with."""
    payload = bytes.fromhex(password_hash_hex_value) + bytes.fromhex(random_hex)
    return hashlib.md5(payload, usedforsecurity=False).hexdigest()


def money(value):
    return Decimal(value).quantize(MONEY_STEP, rounding=ROUND_HALF_UP)


def text_money(value):
    return format(money(value), "f")


def text_price(value, digits):
    return format(Decimal(value).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP), "f")


def lots_to_volume_ext(lots):
    volume_ext = Decimal(lots) * VOLUME_EXT_PER_LOT
    if volume_ext != volume_ext.to_integral_value() or volume_ext <= 0:
        raise MTError(REQUEST_INVALID_VOLUME, f"invalid volume {lots}")
    return int(volume_ext)


def volume_ext_to_lots(volume_ext):
    return Decimal(volume_ext) / VOLUME_EXT_PER_LOT
