"""Browser tests: Debian's headless Chromium driven by Selenium against the live test server.

pytest-django's ``live_server`` is the machinery of Django's ``StaticLiveServerTestCase`` (a
``LiveServerThread`` serving the app with the staticfiles handler), so pages load their real CSS
and JavaScript; the pytest form lets these tests share the role fixtures of ``tests/conftest.py``.

Screenshots go to ``$BROWSER_ARTIFACTS`` (default ``var/test/screenshots``), one file per
``page.screenshot(name)``, so a reviewer can look at every screen a test walked through. A
screenshot given a docs name (``page.screenshot(name, docs="overview")``) is also written as
``$DOCS_SCREENSHOTS/overview.png`` when that variable names a folder (``make screenshots``: the
images of the documentation, docs/img/).
"""

from __future__ import annotations

import base64
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from tests.conftest import _service_unavailable

CHROMIUM = os.environ.get("CHROMIUM_BINARY", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
ARTIFACTS = Path(os.environ.get("BROWSER_ARTIFACTS", "var/test/screenshots"))
DOCS_SCREENSHOTS = os.environ.get("DOCS_SCREENSHOTS", "")
DESKTOP = (1366, 900)
PHONE = (390, 844)
PASSWORD = "pw-for-tests-123"  # tests/conftest.py make_user's password
WAIT_SECONDS = 10


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """One headless Chromium for the session; each test starts from a cleared cookie jar."""
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        _service_unavailable("Chromium and chromedriver (Debian: apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    options.add_argument(f"--window-size={DESKTOP[0]},{DESKTOP[1]}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


class Page:
    """What a browser test does with the browser, in the words of the test."""

    def __init__(self, driver: Any, base_url: str, test_name: str) -> None:
        self.driver = driver
        self.base_url = base_url
        self.test_name = re.sub(r"[^A-Za-z0-9_.-]+", "-", test_name)[:120]

    def open(self, path: str) -> Page:
        self.driver.get(self.base_url + path)
        return self

    def login(self, user: User, password: str = PASSWORD) -> Page:
        """Sign in through the real admin login form."""
        from selenium.webdriver.common.by import By

        self.open("/admin/login/")
        self.driver.find_element(By.NAME, "username").send_keys(user.username)
        self.driver.find_element(By.NAME, "password").send_keys(password)
        self.driver.find_element(By.CSS_SELECTOR, "[type=submit]").click()
        self.wait_for(lambda d: "/admin/login/" not in d.current_url)
        return self

    def wait_for(self, condition: Callable[[Any], Any], seconds: float = WAIT_SECONDS) -> Any:
        """Until ``condition(driver)`` is truthy. An element of the page being left goes stale
        under the wait: that counts as "not yet", not as a failure."""
        from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
        from selenium.webdriver.support.ui import WebDriverWait

        ignored = (NoSuchElementException, StaleElementReferenceException)
        return WebDriverWait(self.driver, seconds, ignored_exceptions=ignored).until(condition)

    def wait_for_text(self, text: str, seconds: float = WAIT_SECONDS) -> Page:
        """Until the page shows ``text`` (read through script: no element to go stale)."""
        self.wait_for(lambda d: text in (d.execute_script("return document.body ? document.body.innerText : ''")))
        return self

    def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def click(self, css: str) -> Page:
        self.find(css).click()
        return self

    def text(self) -> str:
        return self.find("body").text

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def screenshot(self, name: str, docs: str = "") -> Path:
        """Save the window as ``<test>--<name>.png`` among the artifacts; with ``docs`` and
        ``$DOCS_SCREENSHOTS`` set, also as ``<docs>.png`` there (``docs_image``)."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.test_name}--{name}.png"
        self.driver.save_screenshot(str(path))
        if docs and DOCS_SCREENSHOTS:
            self.docs_image(Path(DOCS_SCREENSHOTS) / f"{docs}.png")
        return path

    def docs_image(self, path: Path) -> Path:
        """The top of the page as a PNG for the docs: the window's width, cropped to the content
        when the page is shorter than the window (a smaller file, no empty band)."""
        self.js("window.scrollTo(0, 0)")
        width, height = self.js(
            "return [document.documentElement.clientWidth,"
            " Math.min(window.innerHeight, document.documentElement.scrollHeight)]"
        )
        clip = {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}
        shot = self.driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "clip": clip})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def screenshot_of(self, css: str, name: str, docs: str = "", margin: int = 8) -> Path:
        """Like ``screenshot``, of one element's whole box (and ``margin`` px around it), wherever
        it is on the page: a section further down than the window reaches."""
        box = self.js(
            "const r = arguments[0].getBoundingClientRect();"
            "return [r.left + window.scrollX, r.top + window.scrollY, r.width, r.height];",
            self.find(css),
        )
        left, top = max(0, box[0] - margin), max(0, box[1] - margin)
        clip = {"x": left, "y": top, "width": box[2] + 2 * margin, "height": box[3] + 2 * margin, "scale": 1}
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True}
        )
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        paths = [ARTIFACTS / f"{self.test_name}--{name}.png"]
        if docs and DOCS_SCREENSHOTS:
            paths.append(Path(DOCS_SCREENSHOTS) / f"{docs}.png")
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(base64.b64decode(shot["data"]))
        return paths[0]

    def viewport(self, size: tuple[int, int]) -> Page:
        self.driver.set_window_size(*size)
        return self

    def horizontal_overflow(self) -> int:
        """How many CSS pixels the page is wider than the window (0 = no horizontal scroll)."""
        # clientWidth leaves out a vertical scrollbar (innerWidth counts it, which made a page
        # with one read as negative overflow).
        root = "document.documentElement"
        return max(0, int(self.js(f"return {root}.scrollWidth - {root}.clientWidth")))

    def load_ms(self) -> float:
        """Navigation Timing: from navigation start to the end of the load event, in ms."""
        self.wait_for(lambda d: d.execute_script("return document.readyState") == "complete")
        return float(
            self.js(
                "const n = performance.getEntriesByType('navigation')[0];"
                "return n.loadEventEnd > 0 ? n.loadEventEnd - n.startTime : performance.now();"
            )
        )


@pytest.fixture
def page(chromium: Any, live_server: Any, request: pytest.FixtureRequest) -> Iterator[Page]:
    chromium.delete_all_cookies()
    chromium.set_window_size(*DESKTOP)
    yield Page(chromium, live_server.url, request.node.name)
