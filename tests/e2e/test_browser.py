"""End-to-end in a real browser: Debian's headless Chromium driven by
Playwright for Python (pointed at the system Chromium; no browser is
downloaded). The search page takes an identifier and the browser itself
follows the proxy's redirect to the manufacturer's page (a local HTTP
server); a `?noredirect` page shows the public values and not the private
one, with a QR code that decodes to the identifier's proxy URL; a missing
identifier shows the not-found page with status 404. The record page's
screenshot is kept under the test's tmp_path."""
import http.server
import shutil
import subprocess
import threading

import grpc
import pytest

from conftest import Node

ID = "88.100.1/BROWSER-PUMP-7"
PRODUCT = "Gear pump GP-7"
PRIVATE = "cost 12.00 CNY"


def chromium_path():
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Manufacturer(http.server.BaseHTTPRequestHandler):
    """The manufacturer's product page, at any path."""
    seen = []

    def do_GET(self):
        Manufacturer.seen.append(self.path)
        body = (f"<!doctype html><title>Manufacturer</title>"
                f"<h1 id=product>{PRODUCT}</h1><p>{self.path}</p>").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def manufacturer():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Manufacturer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def web(tmp_path_factory, pb, manufacturer):
    node = Node(tmp_path_factory.mktemp("browser"), extra=["--no-quic"]).start()
    pb2, pb2_grpc = pb
    ids = pb2_grpc.IdentifiersStub(grpc.insecure_channel(node.grpc))
    ids.CreateIdentifier(pb2.CreateIdentifierRequest(identifier=ID, values=[
        pb2.Value(index=1, type="URL", data=f"{manufacturer}/products/GP-7".encode()),
        pb2.Value(index=2, type="productName", data=PRODUCT.encode()),
        # Admin read and write only: never on a page.
        pb2.Value(index=7, type="costPrice", data=PRIVATE.encode(), permissions=0x0C),
    ]), metadata=(("authorization", f"Bearer {node.token}"),))
    yield node
    node.stop()


@pytest.fixture(scope="module")
def browser():
    executable = chromium_path()
    if executable is None:
        pytest.skip("no Chromium: scripts/setup.sh installs Debian's `chromium`, "
                    "and it could not be installed on this machine")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 800, "height": 1000})
    p = context.new_page()
    p.set_default_timeout(15_000)
    yield p
    context.close()


def test_search_follows_the_redirect_to_the_manufacturer(web, manufacturer, page):
    page.goto(f"http://{web.http}/")
    assert page.title().startswith("Resolve an identifier")
    page.fill("#id", ID)
    with page.expect_navigation(url=f"{manufacturer}/products/GP-7"):
        page.click("button[type=submit]")
    assert page.url == f"{manufacturer}/products/GP-7"
    assert page.text_content("#product") == PRODUCT
    assert "/products/GP-7" in Manufacturer.seen


def test_record_page_shows_public_values_only(web, page, tmp_path):
    response = page.goto(f"http://{web.http}/{ID}?noredirect")
    assert response.status == 200
    assert page.text_content("h1") == ID
    table = page.inner_text("table")
    assert PRODUCT in table and "productName" in table
    assert "/products/GP-7" in table
    assert PRIVATE not in page.content() and "costPrice" not in page.content()
    qr = page.locator("figure svg")
    assert qr.is_visible()
    box = qr.bounding_box()
    assert box["width"] >= 150 and abs(box["width"] - box["height"]) < 1
    shot = tmp_path / "record-page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 0
    print(f"record page screenshot: {shot}")
    # The QR code as the browser drew it decodes to the proxy URL.
    if shutil.which("zbarimg"):
        r = subprocess.run(["zbarimg", "--raw", "-q", str(shot)], capture_output=True,
                           text=True, timeout=30)
        assert r.stdout.split() == [f"http://{web.http}/{ID}"], r


def test_missing_identifier_is_a_404_page(web, page):
    response = page.goto(f"http://{web.http}/88.100.1/NO-SUCH-PUMP")
    assert response.status == 404
    assert page.text_content("h1") == "Not found"
    assert page.input_value("#id") == "88.100.1/NO-SUCH-PUMP"
