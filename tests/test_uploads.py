"""Uploads: JPEG, PNG and PDF by content, the size limit, and who may read a file back."""

import contextvars
import hashlib
import io
import struct
import zlib
from pathlib import Path

import pytest
import sqlalchemy as sa

from crm_app.extensions import db
from crm_app.uploads.models import Upload
from crm_app.uploads.services import find_owned_upload_by_url

# A 1x1 baseline JPEG (JFIF), as an encoder writes it.
TINY_JPEG = bytes.fromhex(
    "ffd8ffe000104a46494600010100000100010000ffdb004300100b0c0e0c0a100e0d0e1211101318281a181616183123"
    "251d283a333d3c3933383740485c4e404457453738506d51575f626768673e4d71797064785c656763ffdb0043011112"
    "121815182f1a1a2f6342384263636363636363636363636363636363636363636363636363636363636363636363636363"
    "6363636363636363636363636363ffc00011080001000103012200021101031101ffc400150001010000000000000000"
    "0000000000000005ffc40014100100000000000000000000000000000000ffc4001501010100000000000000000000000000"
    "000406ffc40014110100000000000000000000000000000000ffda000c03010002110311003f008e002a87ffd9"
)


def png_bytes(width=1, height=1, extra=b""):
    """A valid RGB PNG; `extra` goes into a private ancillary chunk to reach a given size."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    chunks = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    if extra:
        chunks += chunk(b"teSt", extra)
    return b"\x89PNG\r\n\x1a\n" + chunks + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def png_of_size(size):
    overhead = len(png_bytes(extra=b"x")) - 1
    return png_bytes(extra=b"x" * (size - overhead))


def pdf_bytes():
    """A one-page PDF with a correct cross-reference table."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 72 72] >>",
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return out


FILES = {
    "jpeg": (TINY_JPEG, "photo.jpg", "image/jpeg"),
    "png": (png_bytes(2, 2), "scan.png", "image/png"),
    "pdf": (pdf_bytes(), "statement.pdf", "application/pdf"),
}


class Api:
    """The test client, each request in its own app context as in production."""

    def __init__(self, client):
        self.client = client

    def open(self, method, url, **kwargs):
        return contextvars.Context().run(self.client.open, url, method=method, **kwargs)

    def get(self, url, **kw):
        return self.open("GET", url, **kw)

    def upload(self, content, name="file.bin", headers=None, field="file", mimetype=None):
        data = {field: (io.BytesIO(content), name, mimetype) if mimetype else (io.BytesIO(content), name)}
        return self.open("POST", "/api/v1/uploads", data=data, content_type="multipart/form-data", headers=headers)


@pytest.fixture
def api(client):
    return Api(client)


@pytest.fixture
def owner(factory):
    return factory.user()


@pytest.fixture
def owner_headers(client, factory, owner):
    return factory.headers(client, owner)


def stored_files(app):
    root = Path(app.config["UPLOAD_FOLDER"])
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def upload_rows():
    with db.engine.connect() as conn:
        return conn.execute(sa.select(Upload.__table__)).all()


def assert_error(response, status, code, field=None):
    body = response.get_json()
    assert response.status_code == status, body
    assert set(body) == {"code", "status", "message", "errors"}, body
    assert body["code"] == code and body["status"] == status, body
    if field is not None:
        assert field in body["errors"], body


@pytest.fixture
def nothing_stored(app, ctx):
    """Assert, after the test's request, that no row and no file was added."""
    files_before = stored_files(app)

    def check():
        assert upload_rows() == []
        assert stored_files(app) == files_before

    return check


# Upload -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["jpeg", "png", "pdf"])
def test_jpeg_png_and_pdf_are_accepted_and_stored(app, api, owner, owner_headers, kind):
    content, name, content_type = FILES[kind]
    files_before = stored_files(app)
    response = api.upload(content, name, owner_headers)
    body = response.get_json()
    assert response.status_code == 201, body
    assert set(body) == {"id", "url", "content_type", "size"}
    assert len(body["id"]) == 32 and all(c in "0123456789abcdef" for c in body["id"])
    assert body["url"].endswith(f"/api/v1/uploads/{body['id']}")
    assert body["content_type"] == content_type
    assert body["size"] == len(content)

    [row] = upload_rows()
    assert row.id == body["id"] and row.owner_id == owner.id
    assert row.content_type == content_type and row.size == len(content)
    assert row.sha256 == hashlib.sha256(content).hexdigest()
    assert row.original_name == name
    new_files = stored_files(app) - files_before
    assert new_files == {row.storage_key}
    assert (Path(app.config["UPLOAD_FOLDER"]) / row.storage_key).read_bytes() == content


def test_the_url_uses_the_public_base_url_when_set(app, api, owner_headers, monkeypatch):
    monkeypatch.setitem(app.config, "PUBLIC_BASE_URL", "https://crm.example.test/")
    body = api.upload(FILES["png"][0], "a.png", owner_headers).get_json()
    assert body["url"] == f"https://crm.example.test/api/v1/uploads/{body['id']}"


def test_the_type_comes_from_the_content_not_the_name(app, api, owner_headers):
    content = png_bytes()
    response = api.upload(content, "invoice.pdf", owner_headers, mimetype="application/pdf")
    body = response.get_json()
    assert response.status_code == 201, body
    assert body["content_type"] == "image/png"
    [row] = upload_rows()
    assert row.content_type == "image/png" and row.storage_key.endswith(".png")
    served = api.get(f"/api/v1/uploads/{body['id']}", headers=owner_headers)
    assert served.mimetype == "image/png"


@pytest.mark.parametrize(
    "content, name, mimetype",
    [
        (b"just some text, honestly a photo\n", "photo.jpg", "image/jpeg"),
        (b"<html><script>alert(1)</script></html>", "page.png", "image/png"),
        (b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "anim.gif", "image/gif"),
        (b"PK\x03\x04" + b"\x00" * 30, "doc.pdf", "application/pdf"),
        (b"\xff\xd8", "cut.jpg", "image/jpeg"),
    ],
)
def test_other_content_is_415_and_nothing_is_stored(api, owner_headers, nothing_stored, content, name, mimetype):
    response = api.upload(content, name, owner_headers, mimetype=mimetype)
    assert_error(response, 415, "unsupported_media_type", "file")
    nothing_stored()


def test_a_file_of_exactly_the_limit_is_accepted(app, api, owner_headers):
    limit = app.config["UPLOAD_MAX_BYTES"]
    assert limit == 256 * 1024
    response = api.upload(png_of_size(limit), "big.png", owner_headers)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["size"] == limit


def test_a_file_one_byte_over_the_limit_is_413_and_nothing_is_stored(app, api, owner_headers, nothing_stored):
    content = png_of_size(app.config["UPLOAD_MAX_BYTES"] + 1)
    assert_error(api.upload(content, "big.png", owner_headers), 413, "payload_too_large", "file")
    nothing_stored()


def test_a_request_far_over_the_limit_is_413_and_nothing_is_stored(app, api, owner_headers, nothing_stored):
    content = png_of_size(app.config["UPLOAD_MAX_BYTES"] * 2)
    assert_error(api.upload(content, "huge.png", owner_headers), 413, "payload_too_large")
    nothing_stored()


def test_a_smaller_configured_limit_applies(app, api, owner_headers, nothing_stored, monkeypatch):
    monkeypatch.setitem(app.config, "UPLOAD_MAX_BYTES", 1024)
    assert_error(api.upload(png_of_size(1025), "a.png", owner_headers), 413, "payload_too_large", "file")
    nothing_stored()
    assert api.upload(png_of_size(1024), "a.png", owner_headers).status_code == 201


def test_a_missing_file_field_is_422(api, owner_headers, nothing_stored):
    response = api.open("POST", "/api/v1/uploads", data={}, content_type="multipart/form-data", headers=owner_headers)
    assert_error(response, 422, "validation_error", "file")
    response = api.upload(png_bytes(), "a.png", owner_headers, field="document")
    assert response.status_code == 422, response.get_json()
    response = api.open(
        "POST",
        "/api/v1/uploads",
        data={"file": "not a file"},
        content_type="multipart/form-data",
        headers=owner_headers,
    )
    assert_error(response, 422, "validation_error", "file")
    response = api.open("POST", "/api/v1/uploads", json={"file": "aGVsbG8="}, headers=owner_headers)
    assert_error(response, 422, "validation_error", "file")
    nothing_stored()


def test_an_empty_file_is_422(api, owner_headers, nothing_stored):
    assert_error(api.upload(b"", "empty.png", owner_headers), 422, "validation_error", "file")
    nothing_stored()


def test_uploading_needs_a_token(api, nothing_stored):
    assert_error(api.upload(png_bytes(), "a.png"), 401, "unauthorized")
    assert_error(api.upload(png_bytes(), "a.png", {"Authorization": "Bearer not.a.token"}), 401, "token_invalid")
    nothing_stored()


def test_ibs_and_admins_may_upload_too(api, factory):
    for user in (factory.ib(), factory.admin()):
        response = api.upload(FILES["pdf"][0], "a.pdf", factory.headers(api.client, user))
        assert response.status_code == 201, response.get_json()
    assert len(upload_rows()) == 2


# Download -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["jpeg", "png", "pdf"])
def test_the_owner_gets_the_same_bytes_back_with_the_right_headers(api, owner_headers, kind):
    content, name, content_type = FILES[kind]
    upload_id = api.upload(content, name, owner_headers).get_json()["id"]
    response = api.get(f"/api/v1/uploads/{upload_id}", headers=owner_headers)
    assert response.status_code == 200
    assert response.data == content
    assert response.mimetype == content_type
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert not response.headers.get("Content-Disposition", "").startswith("attachment")


def test_an_admin_gets_any_users_file(api, factory, owner_headers):
    content = FILES["pdf"][0]
    upload_id = api.upload(content, "a.pdf", owner_headers).get_json()["id"]
    admin_headers = factory.headers(api.client, factory.admin())
    response = api.get(f"/api/v1/uploads/{upload_id}", headers=admin_headers)
    assert response.status_code == 200
    assert response.data == content and response.mimetype == "application/pdf"


def test_someone_elses_file_is_404_exactly_like_a_missing_one(api, factory, owner):
    ib = factory.ib()
    owner_in_tree = factory.user(parent=ib)
    upload_id = api.upload(FILES["png"][0], "a.png", factory.headers(api.client, owner_in_tree)).get_json()["id"]
    stranger_headers = factory.headers(api.client, owner)

    theirs = api.get(f"/api/v1/uploads/{upload_id}", headers=stranger_headers)
    missing = api.get(f"/api/v1/uploads/{'0' * 32}", headers=stranger_headers)
    assert_error(theirs, 404, "not_found")
    assert theirs.get_json() == missing.get_json()
    assert theirs.data == missing.data
    # Not even the client's own IB may read it.
    assert_error(api.get(f"/api/v1/uploads/{upload_id}", headers=factory.headers(api.client, ib)), 404, "not_found")


@pytest.mark.parametrize(
    "upload_id",
    ["abc", "0" * 31, "0" * 33, "g" * 32, "..%2F..%2Fetc%2Fpasswd", "%00", "1; DROP TABLE uploads"],
)
def test_a_malformed_id_is_404(api, owner_headers, upload_id):
    assert_error(api.get(f"/api/v1/uploads/{upload_id}", headers=owner_headers), 404, "not_found")


def test_the_id_is_case_sensitive(api, owner_headers):
    upload_id = api.upload(FILES["png"][0], "a.png", owner_headers).get_json()["id"]
    if upload_id != upload_id.upper():
        assert api.get(f"/api/v1/uploads/{upload_id.upper()}", headers=owner_headers).status_code == 404


def test_reading_a_file_needs_a_token(api, owner_headers):
    upload_id = api.upload(FILES["png"][0], "a.png", owner_headers).get_json()["id"]
    assert_error(api.get(f"/api/v1/uploads/{upload_id}"), 401, "unauthorized")


# find_owned_upload_by_url --------------------------------------------------------------


def test_find_owned_upload_by_url_finds_only_the_owners_file(app, api, factory, owner, owner_headers, monkeypatch):
    other = factory.user()
    body = api.upload(FILES["png"][0], "a.png", owner_headers).get_json()
    other_body = api.upload(FILES["pdf"][0], "b.pdf", factory.headers(api.client, other)).get_json()
    db.session.expire_all()

    found = find_owned_upload_by_url(body["url"], owner.id)
    assert found is not None and found.id == body["id"] and found.owner_id == owner.id
    assert find_owned_upload_by_url(f"https://crm.example.test/api/v1/uploads/{body['id']}", owner.id).id == body["id"]
    assert find_owned_upload_by_url(f"{body['url']}?download=1", owner.id).id == body["id"]

    assert find_owned_upload_by_url(body["url"], other.id) is None
    assert find_owned_upload_by_url(other_body["url"], owner.id) is None
    assert find_owned_upload_by_url(other_body["url"], other.id).id == other_body["id"]
    for url in (None, "", "not a url", f"/api/v1/uploads/{'0' * 32}", f"{body['url']}/extra", body["id"]):
        assert find_owned_upload_by_url(url, owner.id) is None, url

    monkeypatch.setitem(app.config, "PUBLIC_BASE_URL", "https://crm.example.test")
    with_base = api.upload(FILES["jpeg"][0], "c.jpg", owner_headers).get_json()
    assert with_base["url"].startswith("https://crm.example.test/")
    assert find_owned_upload_by_url(with_base["url"], owner.id).id == with_base["id"]
