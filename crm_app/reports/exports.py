"""The seed's reports as export sources: the list's query, with the list's cells as plain,
SQL-formatted columns (so PostgreSQL's COPY writes the CSV)."""

from crm_app.exports.services import Column, register_report
from crm_app.reports import services

H = {
    "order_number": ("Order number", "订单号", "訂單號"),
    "submit_time": ("Submit time", "提交时间", "提交時間"),
    "user_name": ("Client", "客户", "客戶"),
    "account": ("Trading account", "交易账号", "交易帳號"),
    "server_name": ("Server", "服务器", "伺服器"),
    "method": ("Method", "方式", "方式"),
    "amount": ("Amount", "金额", "金額"),
    "fee": ("Fee", "手续费", "手續費"),
    "currency": ("Currency", "币种", "幣種"),
    "status": ("Status", "状态", "狀態"),
    "auditor_name": ("Auditor", "审核人", "審核人"),
    "source_trading_account": ("From account", "转出账户", "轉出帳戶"),
    "target_trading_account": ("To account", "转入账户", "轉入帳戶"),
    "trading_account": ("Trading account", "交易账号", "交易帳號"),
    "symbol": ("Symbol", "交易品种", "交易品種"),
    "trading_type": ("Type", "交易类型", "交易類型"),
    "volume": ("Volume (lots)", "手数", "手數"),
    "open_price": ("Open price", "开仓价", "開倉價"),
    "open_time": ("Open time", "开仓时间", "開倉時間"),
    "close_price": ("Close price", "平仓价", "平倉價"),
    "close_time": ("Close time", "平仓时间", "平倉時間"),
    "sl": ("S/L", "止损", "止損"),
    "tp": ("T/P", "止盈", "止盈"),
    "commission": ("Commission", "佣金", "佣金"),
    "swap": ("Swap", "隔夜利息", "隔夜利息"),
    "profit": ("Profit", "盈亏", "盈虧"),
    "leverage": ("Leverage", "杠杆", "槓桿"),
    "pending_price": ("Pending price", "挂单价", "掛單價"),
    "pending_time": ("Pending time", "挂单时间", "掛單時間"),
}
# How the list shows each number (schemas: Money 2 places, Fixed volumes 2, Price 5) and which
# cells are times: every file, whatever the database, shows them the same way.
PLACES = {
    **dict.fromkeys(("amount", "fee", "commission", "swap", "profit"), services.MONEY_PLACES),
    "volume": services.VOLUME_PLACES,
    **dict.fromkeys(("open_price", "close_price", "sl", "tp", "pending_price"), services.PRICE_PLACES),
}
TIMES = {"submit_time", "open_time", "close_time", "pending_time"}
# Identifiers: never cut nor wrapped in a PDF.
IDS = {"order_number", "account", "source_trading_account", "target_trading_account", "trading_account"}
RIGHT = set(PLACES) | {"leverage"}
FILTER_LABELS = {
    key: dict(zip(("en", "zh-CN", "zh-TW"), texts, strict=True))
    for key, texts in {
        "start_time": ("From", "开始时间", "開始時間"),
        "end_time": ("To", "结束时间", "結束時間"),
        "status": ("Status", "状态", "狀態"),
        "method": ("Method", "方式", "方式"),
        "order_number": ("Order number", "订单号", "訂單號"),
        "account": ("Trading account", "交易账号", "交易帳號"),
        "symbol": ("Symbol", "交易品种", "交易品種"),
        "trading_type": ("Type", "交易类型", "交易類型"),
        "time_type": ("Time of", "时间类型", "時間類型"),
        "server_id": ("Server", "服务器", "伺服器"),
        "trading_account_id": ("Account id", "账户ID", "帳戶ID"),
    }.items()
}


def register(name, keys, export_query, count, title):
    """`export_query(user, filters)` selects one column per key, in order (a nested trading
    account is its login in a file); `count(user, filters)` is the list's exact total."""
    columns = [
        Column(
            key,
            dict(zip(("en", "zh-CN", "zh-TW"), H[key], strict=True)),
            align="right" if key in RIGHT else "left",
            kind="number" if key in PLACES else "time" if key in TIMES else "id" if key in IDS else "text",
            places=PLACES.get(key),
        )
        for key in keys
    ]
    register_report(
        name,
        columns,
        export_query,
        list,
        dict(zip(("en", "zh-CN", "zh-TW"), title, strict=True)),
        filter_labels=FILTER_LABELS,
        csv_by_copy=True,
        count_for=count,
    )


MONEY_KEYS = [
    "order_number",
    "submit_time",
    "user_name",
    "account",
    "server_name",
    "method",
    "amount",
    "fee",
    "currency",
    "status",
    "auditor_name",
]
TRADE_KEYS = ["order_number", "user_name", "trading_account", "symbol", "trading_type", "volume"]

register(
    "withdrawals",
    MONEY_KEYS,
    services.withdrawals_export_query,
    services.withdrawals_count,
    ("Withdrawals", "出金报表", "出金報表"),
)
register(
    "deposits",
    MONEY_KEYS,
    services.deposits_export_query,
    services.deposits_count,
    ("Deposits", "入金报表", "入金報表"),
)
register(
    "transfers",
    [
        "order_number",
        "submit_time",
        "user_name",
        "source_trading_account",
        "target_trading_account",
        "amount",
        "currency",
        "status",
    ],
    services.transfers_export_query,
    services.transfers_count,
    ("Transfers", "转账报表", "轉帳報表"),
)
register(
    "history-orders",
    TRADE_KEYS + ["open_price", "open_time", "close_price", "close_time", "sl", "tp", "commission", "swap", "profit"],
    services.history_orders_export_query,
    services.history_orders_count,
    ("Closed orders", "历史订单报表", "歷史訂單報表"),
)
register(
    "positions",
    TRADE_KEYS + ["leverage", "open_price", "open_time", "close_price", "sl", "tp", "commission", "swap", "profit"],
    services.positions_export_query,
    services.positions_count,
    ("Open positions", "持仓报表", "持倉報表"),
)
register(
    "pending-orders",
    TRADE_KEYS + ["pending_price", "pending_time", "sl", "tp"],
    services.pending_orders_export_query,
    services.pending_orders_count,
    ("Pending orders", "挂单报表", "掛單報表"),
)
