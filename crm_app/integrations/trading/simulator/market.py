"""Symbols, quotes and the arithmetic of a trade: profit, margin, conversion to the deposit currency.

Contract sizes follow the usual retail specification: 100,000 units for FX pairs, 100 ounces
for XAUUSD. Rates between currencies come from the current quotes (through USD when no pair
joins two currencies directly).
"""

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import select

from crm_app.integrations.trading.simulator import db
from crm_app.integrations.trading.simulator.wire import money

FX_CONTRACT_SIZE = Decimal("100000")


@dataclass(frozen=True)
class SymbolSpec:
    name: str
    base: str
    quote: str
    digits: int
    contract_size: Decimal
    spread: Decimal  # ask - bid
    start_mid: Decimal
    volatility: Decimal  # standard deviation of one minute's move
    swap_long: Decimal  # deposit currency per lot per night (USD accounts)
    swap_short: Decimal

    @property
    def point(self):
        return Decimal(1).scaleb(-self.digits)

    def round_price(self, value):
        return Decimal(value).quantize(self.point, rounding=ROUND_HALF_UP)


def _fx(name, digits, spread, mid, volatility, swap_long, swap_short):
    return SymbolSpec(
        name=name,
        base=name[:3],
        quote=name[3:],
        digits=digits,
        contract_size=FX_CONTRACT_SIZE,
        spread=Decimal(spread),
        start_mid=Decimal(mid),
        volatility=Decimal(volatility),
        swap_long=Decimal(swap_long),
        swap_short=Decimal(swap_short),
    )


SYMBOLS = {
    spec.name: spec
    for spec in (
        _fx("EURUSD", 5, "0.00010", "1.08500", "0.00012", "-6.50", "1.20"),
        _fx("GBPUSD", 5, "0.00014", "1.26500", "0.00015", "-5.10", "0.40"),
        _fx("AUDUSD", 5, "0.00012", "0.65500", "0.00010", "-2.30", "-1.10"),
        _fx("NZDUSD", 5, "0.00016", "0.60500", "0.00010", "-2.00", "-0.90"),
        _fx("USDJPY", 3, "0.012", "151.500", "0.018", "12.40", "-25.60"),
        _fx("USDCHF", 5, "0.00014", "0.88500", "0.00010", "4.10", "-10.20"),
        _fx("USDCAD", 5, "0.00016", "1.36500", "0.00012", "0.90", "-6.30"),
        SymbolSpec(
            name="XAUUSD",
            base="XAU",
            quote="USD",
            digits=2,
            contract_size=Decimal("100"),
            spread=Decimal("0.30"),
            start_mid=Decimal("2350.00"),
            volatility=Decimal("0.80"),
            swap_long=Decimal("-35.00"),
            swap_short=Decimal("12.00"),
        ),
    )
}


def symbol_spec(name):
    """The specification of a symbol; any six-letter FX pair is tradable, with a default quote."""
    name = (name or "").upper()
    if name in SYMBOLS:
        return SYMBOLS[name]
    if len(name) == 6 and name.isalpha():
        digits = 3 if name.endswith("JPY") else 5
        point = Decimal(1).scaleb(-digits)
        return _fx(name, digits, point * 15, "1" if digits == 5 else "100", point * 12, "-3.00", "-1.00")
    return None


class Quotes:
    """Bid/ask per symbol at one moment, and the conversion rates they imply."""

    def __init__(self, bid_ask):
        self.bid_ask = dict(bid_ask)

    @classmethod
    def load(cls, conn):
        rows = conn.execute(select(db.prices.c.symbol, db.prices.c.bid, db.prices.c.ask)).all()
        known = {row.symbol: (row.bid, row.ask) for row in rows}
        missing = [spec for name, spec in SYMBOLS.items() if name not in known]
        for spec in missing:
            bid = spec.round_price(spec.start_mid - spec.spread / 2)
            ask = spec.round_price(bid + spec.spread)
            conn.execute(db.prices.insert().values(symbol=spec.name, bid=bid, ask=ask))
            known[spec.name] = (bid, ask)
        return cls(known)

    def has(self, symbol):
        return symbol in self.bid_ask

    def bid(self, symbol):
        return self.bid_ask[symbol][0]

    def ask(self, symbol):
        return self.bid_ask[symbol][1]

    def mid(self, symbol):
        bid, ask = self.bid_ask[symbol]
        return (bid + ask) / 2

    def set(self, conn, symbol, bid, ask):
        self.bid_ask[symbol] = (bid, ask)
        updated = conn.execute(db.prices.update().where(db.prices.c.symbol == symbol).values(bid=bid, ask=ask))
        if not updated.rowcount:
            conn.execute(db.prices.insert().values(symbol=symbol, bid=bid, ask=ask))

    def rate(self, source, target):
        """How many `target` one `source` buys."""
        if source == target:
            return Decimal(1)
        if self.has(source + target):
            return self.mid(source + target)
        if self.has(target + source):
            return 1 / self.mid(target + source)
        if "USD" not in (source, target):
            return self.rate(source, "USD") * self.rate("USD", target)
        raise LookupError(f"no quote converts {source} to {target}")

    def convert(self, amount, source, target):
        return Decimal(amount) * self.rate(source, target)


def trade_profit(spec, side, lots, open_price, close_price, quotes, currency):
    """Profit of closing `lots` at `close_price`, in the deposit currency, to the cent."""
    direction = 1 if side == "buy" else -1
    in_quote_currency = (Decimal(close_price) - Decimal(open_price)) * direction * Decimal(lots) * spec.contract_size
    return money(quotes.convert(in_quote_currency, spec.quote, currency))


def required_margin(spec, lots, price, leverage, quotes, currency):
    """Margin of a position: its notional in the deposit currency divided by the leverage."""
    notional_in_base = Decimal(lots) * spec.contract_size
    in_quote = notional_in_base * Decimal(price)
    return money(quotes.convert(in_quote, spec.quote, currency) / Decimal(leverage))
