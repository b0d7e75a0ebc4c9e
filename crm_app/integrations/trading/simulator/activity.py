"""Trading activity in simulated time, so demos and reports have a living book to show.

Each simulated minute: quotes take a random step (weekends stay still, as FX does);
pending orders that the market reached are filled (a stop-limit first turns into its
limit); positions whose stop loss or take profit was touched are closed at that level;
accounts under their group's stop-out level lose their worst position; then every trader
acts according to a profile (scalper, day trader, swing trader): closes what it has held
long enough, opens market positions sized to a fixed risk of equity, places and cancels
pending orders of all six kinds. Crossing midnight (server time) books swaps, three times
on Wednesday night. Commissions come from the account's group. The simulator's clock moves
on by one minute per step, so deals keep growing in time as their tickets grow.
"""

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal

from sqlalchemy import select

from crm_app.integrations.trading.simulator import book, db
from crm_app.integrations.trading.simulator.market import SYMBOLS, Quotes, required_margin, symbol_spec
from crm_app.integrations.trading.simulator.wire import (
    REASON_CLIENT,
    REASON_SL,
    REASON_SO,
    REASON_TP,
    money,
    volume_ext_to_lots,
)

LOT_STEP = Decimal("0.01")
MAX_LOTS = Decimal("20")
WEDNESDAY = 2


@dataclass(frozen=True)
class Profile:
    name: str
    trades_per_hour: float
    pending_share: float  # of new trades, how many start as pending orders
    mean_hold_minutes: float
    stop_in_minutes_of_moves: tuple  # stop distance, in one-minute standard deviations
    reward_to_risk: tuple
    risk_of_equity: float
    pending_life_minutes: float


PROFILES = (
    Profile("scalper", 6.0, 0.1, 12, (6, 14), (0.8, 1.5), 0.003, 30),
    Profile("day_trader", 1.5, 0.35, 120, (15, 40), (1.2, 2.5), 0.01, 240),
    Profile("swing_trader", 0.15, 0.5, 2880, (60, 200), (2.0, 4.0), 0.02, 2880),
)


def profile_of(login):
    return PROFILES[login % len(PROFILES)]


def favourite_symbols(login):
    chooser = random.Random(login)  # the same trader keeps the same habits across runs
    return chooser.sample(sorted(SYMBOLS), k=3)


def as_decimal(number, places=8):
    return Decimal(str(round(number, places)))


class ActivityRun:
    """One `/sim/activity` request: `minutes` of simulated trading for the chosen accounts."""

    def __init__(self, engine, *, server_key=None, logins=None, seed=None, traders_act=True):
        self.engine = engine
        self.traders_act = traders_act  # False: only the market moves (fills, stops, swaps)
        self.server_key = server_key
        self.logins = {int(login) for login in logins} if logins else None
        self.rng = random.Random(seed)
        self.servers = {}
        self.groups = {}
        self.counts = dict.fromkeys(
            (
                "positions_opened",
                "positions_closed",
                "pending_placed",
                "pending_filled",
                "pending_canceled",
                "sl_hits",
                "tp_hits",
                "stop_outs",
                "swap_charges",
            ),
            0,
        )

    def run(self, minutes):
        started = finished = None
        for _ in range(int(minutes)):
            with self.engine.begin() as conn:
                moment = book.sim_now(conn) + timedelta(minutes=1)
                book.advance_clock(conn, 60)
                self.step(conn, moment)
            started = started or moment
            finished = moment
        return {
            "minutes": int(minutes),
            "from": started.isoformat() if started else None,
            "to": finished.isoformat() if finished else None,
            **self.counts,
        }

    # One minute --------------------------------------------------------------------------

    def step(self, conn, moment):
        quotes = Quotes.load(conn)
        accounts = self.participants(conn)
        weekend = moment.weekday() >= 5
        if not weekend:
            self.move_prices(conn, quotes)
        positions, orders = self.snapshot(conn, accounts)
        for account in accounts:
            server = self.server(conn, account.server_key)
            group = self.group(conn, server.key, account.group_name)
            trader = Trader(self, conn, server, group, account, quotes, moment)
            trader.positions = positions.get((account.server_key, account.login), [])
            if self.crossed_midnight(server, moment - timedelta(minutes=1), moment):
                trader.book_swaps()
            if weekend:
                continue
            trader.work_pending_orders(orders.get((account.server_key, account.login), []))
            trader.hit_stops_and_targets()
            trader.stop_out()
            if self.traders_act:
                trader.trade()

    def participants(self, conn):
        query = select(db.accounts)
        if self.server_key:
            query = query.where(db.accounts.c.server_key == self.server_key)
        if self.logins is not None:
            query = query.where(db.accounts.c.login.in_(self.logins))
        return [a for a in conn.execute(query.order_by(db.accounts.c.id)).all() if a.balance + a.credit > 0]

    def snapshot(self, conn, accounts):
        """Open positions and working orders of every participant, in two queries."""
        keys = {(a.server_key, a.login) for a in accounts}
        logins = {a.login for a in accounts}
        positions, orders = {}, {}
        for row in conn.execute(select(db.positions).where(db.positions.c.login.in_(logins))).all():
            if (row.server_key, row.login) in keys:
                positions.setdefault((row.server_key, row.login), []).append(row)
        query = select(db.orders).where(db.orders.c.login.in_(logins), db.orders.c.is_open.is_(True))
        for row in conn.execute(query).all():
            if (row.server_key, row.login) in keys:
                orders.setdefault((row.server_key, row.login), []).append(row)
        return positions, orders

    def server(self, conn, key):
        if key not in self.servers:
            self.servers[key] = book.load_server(conn, key)
        return self.servers[key]

    def group(self, conn, server_key, name):
        if (server_key, name) not in self.groups:
            self.groups[server_key, name] = book.load_group(conn, server_key, name)
        return self.groups[server_key, name]

    def move_prices(self, conn, quotes):
        for spec in SYMBOLS.values():
            mid = quotes.mid(spec.name) + as_decimal(self.rng.gauss(0, float(spec.volatility)))
            mid = max(mid, spec.start_mid / 4)
            bid = spec.round_price(mid - spec.spread / 2)
            quotes.set(conn, spec.name, bid, spec.round_price(bid + spec.spread))

    @staticmethod
    def crossed_midnight(server, previous, moment):
        day = 86400
        return book.server_seconds(server, previous) // day != book.server_seconds(server, moment) // day


class Trader:
    """One account during one simulated minute: the market acts on its book, then it acts."""

    def __init__(self, run, conn, server, group, account, quotes, moment):
        self.run, self.conn, self.server, self.group = run, conn, server, group
        self.account, self.quotes, self.moment = account, quotes, moment
        self.profile = profile_of(account.login)
        self.positions = []

    def count(self, name):
        self.run.counts[name] += 1

    def refresh(self):
        """Re-read the account and its positions after this minute changed them."""
        self.account = book.load_account(self.conn, self.server.key, self.account.login)
        self.positions = book.open_positions_of(self.conn, self.server.key, self.account.login)

    def close(self, position, price, reason):
        book.close_position(self.conn, self.server, self.account, position, price, self.moment, reason=reason)

    # The market acting on orders and positions --------------------------------------------

    def work_pending_orders(self, orders):
        filled = False
        for order in orders:
            spec = symbol_spec(order.symbol)
            bid, ask = self.quotes.bid(spec.name), self.quotes.ask(spec.name)
            reached = {
                2: ask <= order.price_order,
                3: bid >= order.price_order,
                4: ask >= order.price_order,
                5: bid <= order.price_order,
                6: ask >= order.price_order,
                7: bid <= order.price_order,
            }[order.type]
            if order.type in (6, 7) and reached:
                # The stop is reached: the order becomes a limit order at its stop-limit price.
                self.conn.execute(
                    db.orders.update()
                    .where(db.orders.c.ticket == order.ticket)
                    .values(type=2 if order.type == 6 else 3, price_order=order.price_trigger, price_trigger=0)
                )
            elif reached:
                book.fill_pending(self.conn, self.server, self.account, order, self.moment, reason=REASON_CLIENT)
                self.count("pending_filled")
                filled = True
            elif book.utc_of(self.server, order.time_setup) + self.pending_life <= self.moment:
                book.cancel_pending(self.conn, self.server, order, self.moment)
                self.count("pending_canceled")
        if filled:
            self.refresh()

    @property
    def pending_life(self):
        return timedelta(minutes=self.profile.pending_life_minutes)

    def hit_stops_and_targets(self):
        closed = False
        for position in self.positions:
            spec = symbol_spec(position.symbol)
            side = book.position_side(position)
            price = book.closing_price(self.quotes, spec, side)
            sl, tp = position.price_sl, position.price_tp
            if sl and ((side == "buy" and price <= sl) or (side == "sell" and price >= sl)):
                self.close(position, sl, REASON_SL)
                self.count("sl_hits")
                closed = True
            elif tp and ((side == "buy" and price >= tp) or (side == "sell" and price <= tp)):
                self.close(position, tp, REASON_TP)
                self.count("tp_hits")
                closed = True
        if closed:
            self.refresh()

    def figures(self):
        return book.figures_of(self.account, self.group, self.positions, self.quotes)

    def stop_out(self):
        while self.positions:
            figures = self.figures()
            if figures["margin_level"] >= figures["stop_out_level"]:
                return
            worst = min(self.positions, key=lambda p: book.position_profit(p, self.quotes, self.group.currency)[0])
            price = book.closing_price(self.quotes, symbol_spec(worst.symbol), book.position_side(worst))
            self.close(worst, price, REASON_SO)
            self.count("stop_outs")
            self.refresh()

    def book_swaps(self):
        """The rollover of the server day that just ended: none for weekend days, triple for Wednesday."""
        ended_day = datetime.fromtimestamp(book.server_seconds(self.server, self.moment) - 86400, UTC).weekday()
        if ended_day >= 5 or not self.positions:
            return
        nights = 3 if ended_day == WEDNESDAY else 1
        for position in self.positions:
            spec = symbol_spec(position.symbol)
            per_lot = spec.swap_long if position.action == 0 else spec.swap_short
            lots = volume_ext_to_lots(position.volume_ext)
            charge = money(self.quotes.convert(per_lot * lots * nights, "USD", self.group.currency))
            self.conn.execute(
                db.positions.update()
                .where(db.positions.c.position == position.position)
                .values(storage=position.storage + charge)
            )
            self.count("swap_charges")
        self.refresh()

    # The trader's own decisions ------------------------------------------------------------------

    def trade(self):
        closed = False
        for position in self.positions:
            if self.run.rng.random() < 1 / self.profile.mean_hold_minutes:
                price = book.closing_price(self.quotes, symbol_spec(position.symbol), book.position_side(position))
                self.close(position, price, REASON_CLIENT)
                self.count("positions_closed")
                closed = True
        if closed:
            self.refresh()
        if self.run.rng.random() >= self.profile.trades_per_hour / 60:
            return
        rng = self.run.rng
        spec = SYMBOLS[rng.choice(favourite_symbols(self.account.login))]
        side = rng.choice(("buy", "sell"))
        stop = spec.volatility * as_decimal(rng.uniform(*self.profile.stop_in_minutes_of_moves), 2)
        target = stop * as_decimal(rng.uniform(*self.profile.reward_to_risk), 2)
        figures = self.figures()
        lots = self.position_size(spec, stop, figures)
        if lots is None:
            return
        price = self.quotes.ask(spec.name)
        needed = required_margin(spec, lots, price, self.account.leverage, self.quotes, self.group.currency)
        if needed > figures["margin_free"] / 2:
            return  # a prudent trader keeps half the free margin
        if rng.random() < self.profile.pending_share:
            self.place_pending_order(spec, side, lots, stop, target)
            return
        entry = self.quotes.ask(spec.name) if side == "buy" else self.quotes.bid(spec.name)
        direction = 1 if side == "buy" else -1
        book.open_position(
            self.conn, self.server, self.account, spec, side, lots, entry, self.moment,
            sl=spec.round_price(entry - direction * stop), tp=spec.round_price(entry + direction * target),
            reason=REASON_CLIENT,
        )  # fmt: skip
        self.count("positions_opened")
        self.refresh()

    def position_size(self, spec, stop, figures):
        """Lots that lose `risk_of_equity` of equity if the stop is hit, on the 0.01 lot grid."""
        loss_per_lot = self.quotes.convert(stop * spec.contract_size, spec.quote, figures["currency"])
        if figures["equity"] <= 0 or loss_per_lot <= 0:
            return None
        risk = figures["equity"] * as_decimal(self.profile.risk_of_equity, 4)
        lots = (risk / loss_per_lot).quantize(LOT_STEP, rounding=ROUND_DOWN)
        return min(lots, MAX_LOTS) if lots >= LOT_STEP else None

    def place_pending_order(self, spec, side, lots, stop, target):
        rng = self.run.rng
        distance = spec.volatility * as_decimal(rng.uniform(2, 20), 2)
        kind = rng.choice(("LIMIT", "STOP", "STOP_LIMIT"))
        buying = side == "buy"
        if kind == "LIMIT":
            price = (self.quotes.ask(spec.name) - distance) if buying else (self.quotes.bid(spec.name) + distance)
            trigger = None
        else:
            price = (self.quotes.ask(spec.name) + distance) if buying else (self.quotes.bid(spec.name) - distance)
            trigger = (price - distance / 2) if buying else (price + distance / 2)
        entry = trigger if kind == "STOP_LIMIT" else price
        direction = 1 if buying else -1
        book.place_pending(
            self.conn, self.server, self.account, spec, f"{side.upper()}_{kind}", lots, price, self.moment,
            sl=spec.round_price(entry - direction * stop), tp=spec.round_price(entry + direction * target),
            trigger=trigger,
        )  # fmt: skip
        self.count("pending_placed")
