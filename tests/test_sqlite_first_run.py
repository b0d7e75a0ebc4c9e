"""The first run: SQLite and in-process jobs, as `bin/demo` starts without PostgreSQL
or Redis. Every report export must work there too (SQLite lacks some PostgreSQL
functions), and the file answers with one charset."""

import csv
import io

import pytest
from flask_migrate import upgrade

from crm_app import create_app
from crm_app.admin.services import create_user
from tests.conftest import CHEAP_ARGON2, IsolatedClient

REPORTS = {
    "deposits": {"status": "all"},
    "withdrawals": {"status": "all", "method": "all"},
    "transfers": {"status": "all"},
    "history-orders": {"trading_type": "all"},
    "positions": {"trading_type": "all"},
    "pending-orders": {"trading_type": "all"},
}


@pytest.fixture(scope="module")
def sqlite_app(tmp_path_factory):
    folder = tmp_path_factory.mktemp("first_run")
    application = create_app(
        {
            "APP_ENV": "test",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder / 'crm.db'}",
            "REDIS_URL": None,
            "UPLOAD_FOLDER": str(folder / "uploads"),
            "EXPORT_FOLDER": str(folder / "exports"),
            "TESTING": True,
            **CHEAP_ARGON2,
        }
    )
    application.test_client_class = IsolatedClient
    with application.app_context():
        upgrade()
        create_user({"email": "first@example.test", "password": "Quartz-Lantern-58", "user_type": "client"}, None, None)
        create_user({"email": "boss@example.test", "password": "Quartz-Lantern-58", "user_type": "admin"}, None, None)
    return application


@pytest.mark.parametrize("report", REPORTS)
@pytest.mark.parametrize("email", ["first@example.test", "boss@example.test"])
def test_every_report_exports_on_sqlite(sqlite_app, report, email):
    client = sqlite_app.test_client()
    token = client.post("/api/v1/auth/login", json={"email": email, "password": "Quartz-Lantern-58"}).get_json()[
        "token"
    ]
    headers = {"Authorization": f"Bearer {token}"}
    started = client.post(f"/api/v1/reports/{report}/export", headers=headers, json=REPORTS[report])
    assert started.status_code == 200, started.get_json()
    download = client.get(started.get_json()["download_url"])
    assert download.status_code == 200, download.get_data(as_text=True)[:300]
    assert download.headers["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.reader(io.StringIO(download.get_data(as_text=True).lstrip("\ufeff"))))
    assert len(rows) == 1 and rows[0], "a header and no rows on an empty book"
