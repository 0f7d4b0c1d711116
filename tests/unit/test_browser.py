"""tools.browser: real headless Chromium, offline: screenshots, DOMs, DVC plots without a CDN."""

from __future__ import annotations

import base64
import io
import os
import threading
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpimg

from cd4ml.io import UserError
from cd4ml.shell import checked, dvc
from tools import browser


def _needed(check: Callable[[], object]) -> None:
    """Skip when a tool is missing, but fail in CI, where a missing tool is a broken set-up."""
    try:
        check()
    except UserError as err:
        if os.environ.get("CI"):
            pytest.fail(str(err), pytrace=False)
        pytest.skip(str(err))


@pytest.fixture
def needs_chromium() -> None:
    _needed(browser.chromium)


@pytest.fixture
def needs_vega() -> None:
    _needed(browser.vega_scripts)


def _page(tmp_path: Path, body: str, name: str = "page.html") -> Path:
    html = tmp_path / name
    html.write_text(f"<!DOCTYPE html><html><body>{body}</body></html>", encoding="utf-8")
    return html


def _png_bytes() -> bytes:
    """A real 4x4 PNG (red), so that only the network can make loading it fail."""
    buffer = io.BytesIO()
    mpimg.imsave(buffer, np.tile([1.0, 0.0, 0.0], (4, 4, 1)), format="png")
    return buffer.getvalue()


@pytest.fixture
def http_server() -> Iterator[tuple[str, list[str]]]:
    """An HTTP server on loopback that serves a PNG at every path: its URL and the paths asked."""
    asked: list[str] = []
    png = _png_bytes()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Access-Control-Allow-Origin", "*")
            self.end_headers()
            self.wfile.write(png)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", asked
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.usefixtures("needs_chromium")
def test_a_page_with_content_gives_a_screenshot_that_is_not_blank_and_its_dom(tmp_path):
    html = _page(
        tmp_path,
        '<h1>Churn report</h1><div style="width:200px;height:100px;background:#945dd6"></div>'
        "<p id=later></p><script>document.getElementById('later').textContent = 'drawn'</script>",
    )
    png = tmp_path / "shots" / "page.png"
    browser.screenshot(html, png, width=400, height=300)
    assert mpimg.imread(png).shape[:2] == (300, 400)
    assert not browser.is_blank(png)
    dom = browser.dump_dom(html)
    assert "Churn report" in dom
    assert '<p id="later">drawn</p>' in dom  # the DOM after the page's scripts ran


@pytest.mark.usefixtures("needs_chromium")
def test_a_blank_page_gives_a_blank_screenshot(tmp_path):
    png = tmp_path / "blank.png"
    browser.screenshot(_page(tmp_path, ""), png, width=300, height=200)
    assert browser.is_blank(png)


@pytest.mark.usefixtures("needs_chromium")
def test_the_network_is_off_even_on_loopback_but_data_uris_load(tmp_path, http_server):
    url, asked = http_server
    with urllib.request.urlopen(f"{url}/from-python.png", timeout=5) as response:
        assert response.read() == _png_bytes()  # the server answers anyone but Chromium
    data_uri = "data:image/png;base64," + base64.b64encode(_png_bytes()).decode()
    port = url.rsplit(":", 1)[1]

    def img(key: str, src: str) -> str:
        mark = f"document.getElementById('{key}').textContent"
        return (
            f"<p id={key}>pending</p>"
            f"<img src='{src}' onload=\"{mark}='online'\" onerror=\"{mark}='offline'\">"
        )

    def fetched(key: str, src: str) -> str:
        mark = f"document.getElementById('{key}').textContent"
        return (
            f"<p id={key}>pending</p><script>fetch('{src}')"
            f".then(() => {{ {mark} = 'online' }}, () => {{ {mark} = 'offline' }})</script>"
        )

    html = _page(
        tmp_path,
        img("ip", f"{url}/img-by-ip.png")
        + img("name", f"http://localhost:{port}/img-by-name.png")
        + img("internet", "http://example.com/logo.png")
        + fetched("fetch", f"{url}/fetched.png")
        + fetched("fetch-internet", "https://example.com/")
        + img("data", data_uri),
    )
    dom = browser.dump_dom(html)
    for key in ("ip", "name", "internet", "fetch", "fetch-internet"):
        assert f'<p id="{key}">offline</p>' in dom, key
    assert '<p id="data">online</p>' in dom
    assert asked == ["/from-python.png"]  # no request from Chromium reached the server

    png = tmp_path / "data.png"
    browser.screenshot(_page(tmp_path, f"<img src='{data_uri}' width=100>", "data.html"), png)
    assert not browser.is_blank(png)


@pytest.mark.usefixtures("needs_chromium", "needs_vega")
def test_dvc_plots_render_offline_with_the_vega_template_and_not_without(tmp_path):
    (tmp_path / "loss.json").write_text(
        '[{"step": 1, "loss": 0.9}, {"step": 2, "loss": 0.5}, {"step": 3, "loss": 0.4}]',
        encoding="utf-8",
    )
    template = browser.write_vega_template(tmp_path / "templates" / "vega.html")
    page = template.read_text(encoding="utf-8")
    assert "{plot_divs}" in page
    assert "{scripts}" not in page  # DVC would put its CDN <script> tags there
    plot = ["plots", "show", "loss.json", "-x", "step", "-y", "loss"]
    checked(dvc(*plot, "--html-template", str(template), "-o", "offline", cwd=tmp_path), "dvc")
    checked(dvc(*plot, "-o", "cdn", cwd=tmp_path), "dvc plots show")

    offline = tmp_path / "offline" / "index.html"
    assert "<script src=" not in offline.read_text(encoding="utf-8")
    png = tmp_path / "offline.png"
    browser.screenshot(offline, png, width=600, height=450)
    assert not browser.is_blank(png)
    assert 'class="marks"' in browser.dump_dom(offline)  # a canvas or svg vega drew
    # DVC's default page loads the libraries from a CDN: offline it stays empty.
    assert 'class="marks"' not in browser.dump_dom(tmp_path / "cdn" / "index.html")


@pytest.mark.usefixtures("needs_chromium")
def test_a_page_that_never_finishes_times_out_with_the_file_named(tmp_path):
    html = _page(tmp_path, "<script>while (true) {}</script>", "busy.html")
    with pytest.raises(UserError, match=r"busy\.html: Chromium timed out after 2 s"):
        browser.dump_dom(html, timeout=2)


def test_a_missing_page_is_named(tmp_path):
    with pytest.raises(UserError, match=r"screenshot of .*nowhere\.html: no such file"):
        browser.screenshot(tmp_path / "nowhere.html", tmp_path / "out.png")
    assert not (tmp_path / "out.png").exists()


def test_missing_chromium_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    message = "Chromium not found: run make system-deps (installs Debian's chromium)"
    with pytest.raises(UserError) as raised:
        browser.chromium()
    assert str(raised.value) == message
    with pytest.raises(UserError, match="Chromium not found"):
        browser.dump_dom(_page(tmp_path, "<p>hi</p>"))


def test_missing_vega_libraries_say_how_to_install_them(tmp_path):
    with pytest.raises(UserError, match=r"vega\.min\.js is missing: run make system-deps"):
        browser.write_vega_template(tmp_path / "vega.html", node_modules=tmp_path)
    assert not (tmp_path / "vega.html").exists()


def test_vega_scripts_inline_the_three_libraries_safely(tmp_path):
    for build in browser.VEGA_BUILDS:
        (tmp_path / build).parent.mkdir(parents=True)
        (tmp_path / build).write_text(f"var s = '</script>'; // {build}", encoding="utf-8")
    scripts = browser.vega_scripts(tmp_path)
    assert scripts.count("<script>") == 3
    assert scripts.count("</script>") == 3  # only the elements' own ends
    assert "vega-embed/build/vega-embed.min.js" in scripts


@pytest.mark.usefixtures("needs_chromium")
def test_the_cli_prints_the_dom_and_writes_a_screenshot(tmp_path, capsys):
    html = _page(tmp_path, "<p>from the command line</p>")
    browser.main(["dom", str(html)])
    assert "from the command line" in capsys.readouterr().out
    browser.main(["screenshot", str(html)])
    assert capsys.readouterr().out.strip() == str(tmp_path / "page.png")
    assert not browser.is_blank(tmp_path / "page.png")
