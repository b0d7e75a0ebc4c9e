"""Swagger UI at /docs in a real headless Chromium: it loads with no network but the
app's own (no CDN), lists every operation, and "Try it out" → Execute works.

Needs Chromium and its WebDriver (Debian: `chromium` and `chromium-driver`, which
`bin/test` installs when apt-get is available); skipped with the reason otherwise.
"""

import os
import shutil
import threading
from urllib.parse import urlsplit

import pytest

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
from selenium.common.exceptions import TimeoutException, WebDriverException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as until  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
OPERATIONS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
WAIT_SECONDS = 60
SET_TEXTAREA = """
const [area, text] = arguments;
Object.getOwnPropertyDescriptor(HTMLTextAreaElement.prototype, 'value').set.call(area, text);
area.dispatchEvent(new Event('input', {bubbles: true}));
"""


def find_chromium():
    """(browser binary, chromedriver) or the reason the test cannot run."""
    browser = os.environ.get("CHROMIUM_BINARY") or next(filter(None, map(shutil.which, BROWSERS)), None)
    driver = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")
    if not browser:
        return None, None, "no Chromium found (Debian: apt-get install chromium chromium-driver)"
    if not driver:
        return None, None, "no chromedriver found (Debian: apt-get install chromium-driver)"
    return browser, driver, None


@pytest.fixture
def live_server(app):
    """The app with the demo broker loaded, served over real HTTP on a free port."""
    from werkzeug.serving import make_server

    from crm_app.demo import seed_demo

    with app.app_context():
        seed_demo()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(10)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    binary, driver_path, reason = find_chromium()
    if reason:
        pytest.skip(reason)
    from selenium.webdriver.chrome.service import Service

    tmp_path = tmp_path_factory.mktemp("chromium")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path / 'profile'}",
        # Offline: every host name fails to resolve and every proxy lookup is off, so
        # only what 127.0.0.1 serves can load (a CDN reference would break the page).
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--no-proxy-server",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ):
        options.add_argument(argument)
    log = tmp_path / "chromedriver.log"
    try:
        driver = webdriver.Chrome(service=Service(executable_path=driver_path, log_output=str(log)), options=options)
    except WebDriverException:
        # A loaded machine can make Chromium miss the driver's start-up deadline once.
        driver = webdriver.Chrome(service=Service(executable_path=driver_path, log_output=str(log)), options=options)
    driver.set_page_load_timeout(WAIT_SECONDS)
    yield driver
    driver.quit()


def documented_operations(base_url):
    import requests

    document = requests.get(f"{base_url}/api/v1/openapi.json", timeout=30).json()
    return [
        (method.upper(), path) for path, item in document["paths"].items() for method in item if method in OPERATIONS
    ]


def opblock(driver, method, path):
    """The operation's block in the page (Swagger UI marks it with the path)."""
    selector = f'.opblock-{method.lower()} .opblock-summary-path[data-path="{path}"]'
    summary = driver.find_element(By.CSS_SELECTOR, selector)
    return summary.find_element(By.XPATH, "./ancestor::div[contains(@class, 'opblock ')][1]")


def try_it_out(driver, block, body=None):
    """Expand the operation, press Try it out, optionally type a JSON body, Execute;
    return the live response's (status shown, body shown)."""
    wait = WebDriverWait(driver, WAIT_SECONDS)
    if "is-open" not in block.get_attribute("class"):
        block.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
    wait.until(lambda _: block.find_elements(By.CSS_SELECTOR, ".try-out__btn"))
    block.find_element(By.CSS_SELECTOR, ".try-out__btn").click()
    if body is not None:
        editor = wait.until(lambda _: block.find_element(By.CSS_SELECTOR, "textarea.body-param__text"))
        # Typed as one change: key by key, React re-renders the whole page per key (seconds).
        driver.execute_script(SET_TEXTAREA, editor, body)
    wait.until(lambda _: block.find_element(By.CSS_SELECTOR, "button.execute")).click()
    status_cell = ".live-responses-table .response .response-col_status"
    status = wait.until(lambda _: block.find_element(By.CSS_SELECTOR, status_cell).text.strip() or None)
    shown = block.find_element(By.CSS_SELECTOR, ".live-responses-table .response .response-col_description pre")
    return status, shown.text


def open_docs(driver, base_url):
    driver.get(f"{base_url}/docs")
    try:
        WebDriverWait(driver, WAIT_SECONDS).until(
            until.presence_of_element_located((By.CSS_SELECTOR, ".opblock .opblock-summary-path"))
        )
    except TimeoutException:
        errors = driver.find_elements(By.CSS_SELECTOR, ".errors-wrapper, .loading-container")
        pytest.fail(f"Swagger UI listed no operation: {[e.text for e in errors]!r}\n{driver.page_source[:2000]}")


def test_swagger_ui_loads_offline_from_the_app_alone(live_server, browser):
    open_docs(browser, live_server)
    resources = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name).concat([location.href]);"
    )
    referenced = browser.execute_script(
        """return Array.from(document.querySelectorAll('script[src], link[href], img[src], iframe[src]'))
               .map(e => e.src || e.href);"""
    )
    foreign = [url for url in resources + referenced if urlsplit(url).netloc != urlsplit(live_server).netloc]
    assert not foreign, f"the page asked for something the app does not serve: {foreign}"
    loaded = {urlsplit(url).path for url in resources}
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert any(path.endswith(asset) for path in loaded), (asset, sorted(loaded))
    assert "Forex broker CRM" in browser.find_element(By.CSS_SELECTOR, ".info .title").text


def test_swagger_ui_lists_every_documented_operation(live_server, browser):
    expected = documented_operations(live_server)
    open_docs(browser, live_server)
    listed = browser.execute_script(
        """return Array.from(document.querySelectorAll('.opblock')).map(block => [
               block.querySelector('.opblock-summary-method').textContent.trim(),
               block.querySelector('.opblock-summary-path').getAttribute('data-path')]);"""
    )
    # An operation listed under several tags appears once per tag.
    assert {tuple(row) for row in listed} == set(expected)
    assert len(listed) >= len(expected) > 50
    assert ["POST", "/api/v1/auth/login"] in listed


def test_try_it_out_on_a_public_route_shows_the_answer(live_server, browser):
    open_docs(browser, live_server)
    status, shown = try_it_out(browser, opblock(browser, "GET", "/api/v1/config/broker"))
    assert status == "200"
    assert "Demo Markets Ltd" in shown


def test_try_it_out_signs_in_with_the_demo_credentials(live_server, browser):
    from crm_app.demo import DEMO_ADMIN

    open_docs(browser, live_server)
    body = f'{{"email": "{DEMO_ADMIN[0]}", "password": "{DEMO_ADMIN[1]}"}}'
    status, shown = try_it_out(browser, opblock(browser, "POST", "/api/v1/auth/login"), body=body)
    assert status == "200", shown
    assert '"token"' in shown and '"refresh_token"' in shown


def test_authorize_with_a_token_then_a_signed_in_route_answers(live_server, browser):
    """The README's way in: sign in, press Authorize, paste the token, call a route."""
    import json

    from crm_app.demo import DEMO_CLIENT, DEMO_PASSWORD

    open_docs(browser, live_server)
    body = json.dumps({"email": DEMO_CLIENT, "password": DEMO_PASSWORD})
    status, shown = try_it_out(browser, opblock(browser, "POST", "/api/v1/auth/login"), body=body)
    assert status == "200", shown
    token = json.loads(shown)["token"]

    wait = WebDriverWait(browser, WAIT_SECONDS)
    browser.find_element(By.CSS_SELECTOR, ".auth-wrapper .btn.authorize").click()
    field = wait.until(lambda driver: driver.find_element(By.CSS_SELECTOR, ".modal-ux input[type='text']"))
    field.send_keys(token)
    browser.find_element(By.CSS_SELECTOR, ".modal-ux .auth-btn-wrapper .btn.authorize").click()
    browser.find_element(By.CSS_SELECTOR, ".modal-ux .btn-done").click()

    status, shown = try_it_out(browser, opblock(browser, "GET", "/api/v1/menus"))
    assert status == "200", shown
    assert '"list"' in shown and "Dashboard" in shown
