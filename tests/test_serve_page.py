"""The page at / in headless Chromium, against a real uvicorn server on 127.0.0.1.

Needs Debian's chromium (`apt-get install -y chromium chromium-driver`) and Playwright for Python
(`pip install playwright`; no browser download: it drives /usr/bin/chromium). Skips cleanly
without them. Set FACERESTORE_SCREENSHOT=docs/serve.png to save a screenshot of the result.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")

from facerestore.models import zoo  # noqa: E402
from facerestore.serve import create_app  # noqa: E402
from serve_support import png_bytes, running_server, serve_config, small_face_photo, write_tiny_checkpoint  # noqa: E402

CHROMIUM = os.environ.get("FACERESTORE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).is_file(),
                                reason="Chromium is not installed (apt-get install -y chromium chromium-driver)")


@pytest.fixture(autouse=True)
def _offline(tmp_path, monkeypatch):
    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path / "empty-cache"))
    monkeypatch.setenv(zoo.OFFLINE_ENV, "1")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    checkpoint = write_tiny_checkpoint(tmp_path_factory.mktemp("weights"))
    # Beside the tiny GFPGAN (the default, which restores), two zoo models that are never loaded here
    # (downloads are off): the page lists them with what their weight means and their licence.
    config = serve_config(checkpoint, max_upload_bytes=4 * 1024 * 1024)
    app = create_app(config.replace(models=[str(checkpoint), "codeformer", "gpen-bfr-256"]))
    with running_server(app) as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        except Exception as exc:  # a chromium too old or broken for this Playwright
            pytest.skip(f"cannot start {CHROMIUM}: {str(exc).splitlines()[0]}")
        yield browser
        browser.close()


def _page(browser, width: int, height: int):
    page = browser.new_page(viewport={"width": width, "height": height})
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    return page, problems


def _save_screenshot(page, path: Path) -> None:
    """The whole page at 4/5 size in 256 colours: small enough to keep in the repository."""
    import io

    from PIL import Image

    shot = Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB")
    shot = shot.resize((shot.width * 4 // 5, shot.height * 4 // 5), Image.LANCZOS)
    shot.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def _wait_until(page, expression: str, timeout: float = 30.0) -> None:
    """Poll ``expression`` from outside the page: Playwright's wait_for_function evaluates it in
    the page, which our Content-Security-Policy (no eval) rightly refuses."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {expression}; page says: {page.text_content('#error')}")
        time.sleep(0.05)


def test_restore_a_photo_in_the_browser(browser, server, shared_data, tmp_path):
    photo = tmp_path / "blake.jpg"
    photo.write_bytes(small_face_photo(shared_data / "photos", width=500))
    page, problems = _page(browser, 1000, 900)
    page.goto(server + "/")
    _wait_until(page, "document.querySelector('#model').value !== ''")
    page.set_input_files("#file", str(photo))
    page.select_option("#upscale", "2")
    page.click("#submit")
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)
    _wait_until(page, "document.querySelector('#after').naturalWidth > 0 && "
                           "document.querySelector('#before').naturalWidth > 0")
    assert page.eval_on_selector("#after", "img => img.naturalWidth") == 1000  # 500 px at 2x
    faces = page.locator("#faces figure")
    assert faces.count() == 2
    _wait_until(page, "[...document.querySelectorAll('#faces img')].every(img => img.naturalWidth === 64)")
    assert page.locator("#faces img").count() == 4  # each face: as found, restored
    assert page.get_attribute("#download", "href").startswith("blob:")
    assert page.get_attribute("#download", "download") == "blake_restored.png"
    assert page.is_hidden("#error")
    # The slider moves the split between before and after.
    page.fill("#slider", "20")
    page.dispatch_event("#slider", "input")
    assert "80%" in page.eval_on_selector("#before-clip", "el => el.style.clipPath")
    if os.environ.get("FACERESTORE_SCREENSHOT"):
        _save_screenshot(page, Path(os.environ["FACERESTORE_SCREENSHOT"]))
    assert problems == []
    page.close()


def test_phone_width_and_a_clear_error_for_a_bad_file(browser, server, tmp_path):
    page, problems = _page(browser, 375, 740)
    page.goto(server + "/")
    _wait_until(page, "document.querySelector('#model').value !== ''")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # no sideways scrolling
    bad = tmp_path / "notes.jpg"
    bad.write_bytes(b"this is not a photo")
    page.set_input_files("#file", str(bad))
    page.click("#submit")
    page.wait_for_selector("#error:not([hidden])", timeout=30_000)
    message = page.text_content("#error")
    assert "not an image" in message and "notes.jpg" in message
    assert page.is_hidden("#result")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    # The only console error is the browser's own note of the 422 response.
    assert all("422" in p for p in problems), problems
    # A good photo next: the result, slider and faces fit the phone's width too.
    good = tmp_path / "wide.png"
    good.write_bytes(png_bytes(900, 300, noise=False))
    page.set_input_files("#file", str(good))
    page.click("#submit")
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)
    assert page.is_hidden("#error") and page.is_visible("#no-faces")
    _wait_until(page, "document.querySelector('#after').naturalWidth === 1800")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert page.evaluate("document.querySelector('#after').getBoundingClientRect().width <= window.innerWidth")
    page.close()


def test_the_weight_says_what_it_means_for_the_chosen_model(browser, server):
    page, problems = _page(browser, 1000, 700)
    page.goto(server + "/")
    _wait_until(page, "document.querySelector('#model').value !== ''")
    assert page.input_value("#model") == "tiny_clean"  # the default
    assert page.text_content("#weight-meaning") == "blend: 0 = input face, 1 = fully restored"
    assert page.text_content("#model-license") == "Licence: Apache-2.0"
    page.select_option("#model", "codeformer")
    assert page.text_content("#weight-meaning") == "fidelity: 0 = quality, 1 = fidelity"
    assert page.text_content("#model-license") == f"Licence: {zoo.CODEFORMER_LICENSE}"
    page.select_option("#model", "gpen-bfr-256")
    assert page.text_content("#weight-meaning") == "blend: 0 = input face, 1 = fully restored"
    assert "unstated" in page.text_content("#model-license")
    page.set_viewport_size({"width": 375, "height": 740})  # the longest licence still fits a phone
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert problems == []
    page.close()
