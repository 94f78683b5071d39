"""The console's fixtures: a whole fleet (front door, /v1 app, console) on free ports, and Debian's Chromium
driven by Selenium through chromium-driver."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tritonfleet.artifacts import REPOSITORY
from tritonfleet.fleet import Fleet
from tritonfleet.server import free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)
WAIT_S = 120  # the longest a page waits for the model (2 shared cores, other tests beside)


@pytest.fixture(scope="session")
def console_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Every pipeline behind the front door, with /v1 and the console; no probes during the tests (their
    tokens would count in the generation checks)."""
    home = tmp_path_factory.mktemp("console")
    fleet = Fleet.on_free_ports(
        REPOSITORY,
        keys_path=home / "keys.json",
        log=home / "tritonserver.log",
        probe_interval=3600,
        openai_port=free_port(),
    )
    fleet.start()
    yield fleet
    fleet.stop()


@pytest.fixture(scope="session")
def base(console_fleet: Fleet) -> str:
    """The console's URL without its trailing slash (``http://localhost:PORT``)."""
    assert console_fleet.console_url is not None
    return console_fleet.console_url.rstrip("/")


def fetch(url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    """``(status, headers, body)`` of a GET (or a POST of ``body`` as JSON)."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def metric(fleet: Fleet, name: str, **labels: str) -> float:
    """The sum of a metric's samples (those with ``labels``) on the fleet's metrics port."""
    from prometheus_client.parser import text_string_to_metric_families

    _, _, text = fetch(fleet.metrics_url)
    return sum(
        s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def wait_for(check: Callable[[], Any], timeout: float = WAIT_S, every: float = 0.2) -> Any:
    """``check()``'s first true value, or an AssertionError naming it after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s: {getattr(check, '__name__', check)}")
        time.sleep(every)


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """Debian's Chromium, headless, through its WebDriver; skipped where it is not installed, except in CI
    (scripts/setup.sh installs both there, so a missing one is a failure)."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        reason = "Debian's chromium and chromium-driver are not installed (scripts/setup.sh installs them)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_script_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def browser(chromium: Any, base: str) -> Iterator[Any]:
    """The browser on a fresh tab state: no key stored, nothing running (each test opens its page)."""
    chromium.get(base + "/console/favicon.svg")
    chromium.execute_script("sessionStorage.clear()")
    yield chromium
    chromium.get("about:blank")


def open_page(browser: Any, base: str, page: str, ready: str) -> None:
    """Load ``base/#/page`` and wait for the element ``ready`` (a CSS selector)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{base}/#/{page}")
    WebDriverWait(browser, WAIT_S).until(ec.presence_of_element_located((By.CSS_SELECTOR, ready)))
