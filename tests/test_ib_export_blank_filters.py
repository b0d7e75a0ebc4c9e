"""The IB's commission exports (#56, #58) read blank optional filters as no filter: the
body with every optional field `""` or `null` exports what the unfiltered list shows."""

import pytest

from tests.test_export_blank_filters import BLANKS, IB_EXPORTS, blank_body
from tests.test_rebates import run_now, traded, tree  # noqa: F401 - fixtures
from tests.test_reports_exports import download


@pytest.mark.parametrize("blank", BLANKS, ids=["empty", "null"])
@pytest.mark.parametrize("export_path", sorted(IB_EXPORTS))
def test_ib_commission_exports_read_blank_filters_as_no_filter(client, tree, traded, run_jobs, export_path, blank):  # noqa: F811
    run_now(client, tree, run_jobs)
    headers = tree["headers"]["sam"]
    listed = client.get(IB_EXPORTS[export_path], headers=headers)
    assert listed.status_code == 200 and listed.get_json()["total"] >= 1
    body = blank_body(client, export_path, {}, blank)
    assert "client_user_name" in body and "time_search_type" in body
    files = []
    for sent in (body, {}):
        answer = client.post(export_path, headers=headers, json=sent)
        assert answer.status_code == 200, answer.get_json()
        files.append(download(client, run_jobs, answer.get_json()["download_url"]).data)
    assert files[0] == files[1], "blank filters export what no filters export"
    assert len(files[0].decode("utf-8-sig").splitlines()) == listed.get_json()["total"] + 1
