"""The demo broker: configuration and a few users, loaded idempotently.

Later capabilities add their own demo data (trading servers, channels, rules) here.
"""

import secrets

from sqlalchemy import select

from crm_app.broker.models import BrokerSetting, Currency, Menu, PermissionAction
from crm_app.broker.services import DEFAULT_SETTINGS, deep_merge
from crm_app.extensions import db

# Demo credentials are public on purpose: they exist only in a demo database (in
# production `flask seed-demo --allow-production` generates passwords instead).
DEMO_PASSWORD = "Demo-Harbor-2026"  # noqa: S105
DEMO_ADMIN = ("admin@demo.local", "Admin-Lighthouse-71")
DEMO_IB = "ib@demo.local"
DEMO_CLIENT = "client@demo.local"

BROKER = {
    "broker_name_i18n": {"en": "Demo Markets Ltd", "zh-CN": "演示金融有限公司", "zh-TW": "演示金融有限公司"},
    "company_logo_url": "/static/demo/logo.png",
    "email": "support@demo-markets.example",
    "login_page_logo_url": "/static/demo/logo.png",
    "support_phone": "+44 20 0000 0000",
    "timezone": "Asia/Shanghai",
    "watermark_logo_url": "/static/demo/watermark.png",
}

LOGIN_PAGE = {
    "admin_login_bg_image_url": "/static/demo/admin-bg.jpg",
    "admin_login_copy_i18n": {"en": "Back office", "zh-CN": "后台管理", "zh-TW": "後台管理"},
    "admin_login_layout": "center",
    "client_login_bg_image_url": "/static/demo/client-bg.jpg",
    "client_login_copy_i18n": {"en": "Trade the world's markets", "zh-CN": "交易全球市场", "zh-TW": "交易全球市場"},
    "client_login_layout": "split",
    "ib_login_bg_image_url": "/static/demo/ib-bg.jpg",
    "ib_login_copy_i18n": {"en": "Partner portal", "zh-CN": "合作伙伴门户", "zh-TW": "合作夥伴入口"},
    "ib_login_layout": "left",
}

ALL_METHODS = ["bank_transfer", "international_wire_transfer", "cryptocurrency"]
CURRENCIES = [
    ("USD", "US Dollar", "美元", ALL_METHODS),
    ("EUR", "Euro", "欧元", ["bank_transfer", "international_wire_transfer"]),
    ("CNY", "Chinese Yuan", "人民币", ["bank_transfer"]),
    ("USDT", "Tether (TRC20)", "泰达币", ["cryptocurrency"]),
    ("BTC", "Bitcoin", "比特币", ["cryptocurrency"]),
]

# (key, title, path, icon, children)
MENUS = {
    "client": [
        ("dashboard", "Dashboard", "/dashboard", "home", []),
        ("kyc", "KYC", "/kyc", "id-card", []),
        (
            "accounts",
            "Trading accounts",
            "/accounts",
            "wallet",
            [
                ("accounts.list", "My accounts", "/accounts", "", []),
                ("accounts.open", "Open an account", "/accounts/open", "", []),
            ],
        ),
        (
            "funds",
            "Funds",
            "/funds",
            "money",
            [
                ("funds.deposit", "Deposit", "/funds/deposit", "", []),
                ("funds.withdraw", "Withdraw", "/funds/withdraw", "", []),
                ("funds.transfer", "Transfer", "/funds/transfer", "", []),
                ("funds.payment_accounts", "Payout accounts", "/funds/payment-accounts", "", []),
            ],
        ),
        (
            "reports",
            "Reports",
            "/reports",
            "chart",
            [
                ("reports.history_orders", "Closed orders", "/reports/history-orders", "", []),
                ("reports.positions", "Positions", "/reports/positions", "", []),
                ("reports.pending_orders", "Pending orders", "/reports/pending-orders", "", []),
                ("reports.deposits", "Deposits", "/reports/deposits", "", []),
                ("reports.withdrawals", "Withdrawals", "/reports/withdrawals", "", []),
                ("reports.transfers", "Transfers", "/reports/transfers", "", []),
            ],
        ),
        ("platforms", "Downloads", "/platforms", "download", []),
    ],
    "ib": [
        ("ib.dashboard", "Partner dashboard", "/ib", "home", []),
        ("ib.clients", "My clients", "/ib/clients", "team", []),
        ("ib.client_accounts", "Client accounts", "/ib/client-trading-accounts", "wallet", []),
        ("ib.rebates", "Rebates", "/ib/rebates", "gift", []),
        (
            "ib.commissions",
            "Commissions",
            "/ib/commissions",
            "money",
            [
                ("ib.commissions.summary", "Summary", "/ib/commissions", "", []),
                ("ib.commissions.details", "Details", "/ib/commissions/details", "", []),
            ],
        ),
        ("ib.reports", "Reports", "/reports", "chart", []),
        ("ib.profile", "Referral link", "/ib/profile", "link", []),
        ("ib.platforms", "Downloads", "/ib/platforms", "download", []),
    ],
    "admin": [
        ("admin.audits", "Review queue", "/admin/audits", "check", []),
        ("admin.users", "Users", "/admin/users", "team", []),
        ("admin.reports", "Reports", "/reports", "chart", []),
        (
            "admin.config",
            "Configuration",
            "/admin/config",
            "setting",
            [
                ("admin.config.broker", "Broker", "/admin/config/broker", "", []),
                ("admin.config.login_page", "Login pages", "/admin/config/login-page", "", []),
                ("admin.config.currencies", "Currencies", "/admin/currencies", "", []),
            ],
        ),
        ("admin.audit_logs", "Audit log", "/admin/audit-logs", "history", []),
    ],
}

# (key, title, API path, methods): what each portal may call.
REPORT_ACTIONS = [
    ("reports.withdrawals", "Withdrawal report", "/api/v1/reports/withdrawals", ("GET",)),
    ("reports.deposits", "Deposit report", "/api/v1/reports/deposits", ("GET",)),
    ("reports.history_orders", "Closed orders", "/api/v1/reports/history-orders", ("GET",)),
    ("reports.positions", "Positions", "/api/v1/reports/positions", ("GET",)),
    ("reports.pending_orders", "Pending orders", "/api/v1/reports/pending-orders", ("GET",)),
    ("reports.transfers", "Transfer report", "/api/v1/reports/transfers", ("GET",)),
]
CLIENT_ACTIONS = [
    ("client.kyc", "KYC", "/api/v1/client/kyc", ("GET", "PUT")),
    ("client.trading_accounts", "Trading accounts", "/api/v1/client/trading-accounts", ("GET", "POST")),
    ("client.deposits", "Deposits", "/api/v1/client/deposits", ("GET", "POST")),
    ("client.withdrawals", "Withdrawals", "/api/v1/client/withdrawals", ("GET", "POST")),
    ("client.transfers", "Transfers", "/api/v1/client/transfers", ("GET", "POST")),
    ("client.payment_accounts", "Payout accounts", "/api/v1/client/payment-accounts", ("GET", "POST", "PUT")),
    ("uploads", "Uploads", "/api/v1/uploads", ("POST",)),
] + REPORT_ACTIONS
ACTIONS = {
    "client": CLIENT_ACTIONS,
    "ib": CLIENT_ACTIONS
    + [
        ("ib.clients", "My clients", "/api/v1/ib/clients", ("GET",)),
        ("ib.rebates", "Rebates", "/api/v1/ib/rebates", ("GET",)),
        ("ib.commissions", "Commissions", "/api/v1/ib/commissions", ("GET",)),
        ("ib.profile", "Referral link", "/api/v1/ib/profile", ("GET",)),
        ("ib.rebate_payout_account", "Payout account", "/api/v1/ib/rebate-payout-account", ("GET", "PUT")),
    ],
    "admin": REPORT_ACTIONS
    + [
        ("admin.audits", "Review queue", "/api/v1/admin/audits", ("GET", "POST")),
        ("admin.users", "Users", "/api/v1/admin/users", ("GET", "POST", "PATCH")),
        ("admin.config", "Configuration", "/api/v1/admin/config", ("PUT",)),
        ("admin.currencies", "Currencies", "/api/v1/admin/currencies", ("GET", "POST", "PUT", "DELETE")),
        ("admin.audit_logs", "Audit log", "/api/v1/admin/audit-logs", ("GET",)),
    ],
}


def upsert_setting(key, value):
    row = db.session.get(BrokerSetting, key)
    if row is None:
        db.session.add(BrokerSetting(key=key, value=deep_merge(DEFAULT_SETTINGS[key], value)))


def upsert_currencies():
    existing = {c.code for c in db.session.scalars(select(Currency))}
    for order, (code, name_en, name_zh, methods) in enumerate(CURRENCIES):
        if code not in existing:
            db.session.add(Currency(code=code, name_en=name_en, name_zh=name_zh, methods=methods, sort_order=order))


def upsert_menus(user_type, entries, parent=None):
    for order, (key, title, path, icon, children) in enumerate(entries):
        menu = db.session.scalar(select(Menu).where(Menu.user_type == user_type, Menu.key == key))
        if menu is None:
            menu = Menu(
                user_type=user_type,
                key=key,
                title=title,
                path=path,
                icon=icon,
                action=key,
                sort_order=order * 10,
                parent_id=parent.id if parent else None,
            )
            db.session.add(menu)
            db.session.flush()
        upsert_menus(user_type, children, parent=menu)


def upsert_actions(user_type, entries):
    existing = set(db.session.scalars(select(PermissionAction.key).where(PermissionAction.user_type == user_type)))
    for key, title, path, methods in entries:
        if key not in existing:
            db.session.add(
                PermissionAction(
                    user_type=user_type, key=key, title=title, path=path, url=path, methods={m: True for m in methods}
                )
            )


def ensure_user(email, password, user_type, parent=None, first_name="", last_name=""):
    from crm_app.admin.services import create_user
    from crm_app.auth.services import find_user_by_email

    user = find_user_by_email(email)
    created = user is None
    if created:
        user = create_user(
            {
                "email": email,
                "password": password,
                "user_type": user_type,
                "first_name": first_name,
                "last_name": last_name,
                "parent_ib_id": parent.id if parent else None,
            },
            actor=None,
            client=None,
        )
    return user, created


def seed_demo(generate_passwords=False):
    """Load the demo broker; `generate_passwords` gives its users random passwords."""
    upsert_setting("broker", BROKER)
    upsert_setting("login_page", LOGIN_PAGE)
    upsert_currencies()
    for user_type, entries in MENUS.items():
        upsert_menus(user_type, entries)
        upsert_actions(user_type, ACTIONS[user_type])
    db.session.commit()
    from crm_app.kyc.demo import seed_kyc_demo

    seed_kyc_demo()
    from crm_app.trading.demo import seed_trading_demo

    seed_trading_demo()
    from crm_app.funding.demo import seed_funding_demo

    seed_funding_demo()
    from crm_app.rebates.demo import seed_rebates_demo

    seed_rebates_demo()

    if generate_passwords:
        # Production: passwords nobody has read in the README, one per user; shown once, below.
        admin_password, ib_password, client_password = (generated_password() for _ in range(3))
    else:
        admin_password, ib_password, client_password = DEMO_ADMIN[1], DEMO_PASSWORD, DEMO_PASSWORD
    admin, admin_new = ensure_user(DEMO_ADMIN[0], admin_password, "admin", first_name="Demo", last_name="Admin")
    ib, ib_new = ensure_user(DEMO_IB, ib_password, "ib", first_name="Iris", last_name="Broker")
    client, client_new = ensure_user(
        DEMO_CLIENT, client_password, "client", parent=ib, first_name="Chris", last_name="Client"
    )

    def shown(password, created):
        return password if created or not generate_passwords else "(existing user, password unchanged)"

    lines = [
        "Demo broker configuration loaded.",
        f"  admin:  {admin.email} / {shown(admin_password, admin_new)}",
        f"  IB:     {ib.email} / {shown(ib_password, ib_new)}  (referral code {ib.referral_code})",
        f"  client: {client.email} / {shown(client_password, client_new)}",
    ]
    if generate_passwords and (admin_new or ib_new or client_new):
        lines.append("These passwords are shown only now: keep them, or change them after signing in.")
    return lines


def generated_password():
    return secrets.token_urlsafe(18)
