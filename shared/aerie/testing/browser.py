"""Headless Chromium for the browser tier, the one Debian installs (``apt-get install chromium
chromium-driver``; ``.ci/run`` does), driven by Selenium through that package's chromedriver.

Both paths are given to Selenium, so it never looks for (or downloads) a browser of its own.
``AERIE_CHROMIUM`` and ``AERIE_CHROMEDRIVER`` name others.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from aerie.testing.http import basic_auth

if TYPE_CHECKING:
    from aerie.local.stack import LocalStack

__all__ = [
    "BrowserMissing",
    "Steps",
    "bootstrap_token",
    "chromium",
    "element_text",
    "register_person",
    "replaced",
    "sign_in",
    "start_sign_in",
    "submit_provider_form",
    "wait_for",
]


class BrowserMissing(RuntimeError):
    """No Chromium or chromedriver on this machine."""


def _find(variable: str, *names: str) -> str:
    configured = os.environ.get(variable)
    if configured:
        return configured
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise BrowserMissing(
        f"no {names[0]} on PATH (nor ${variable}): the browser tier needs Debian's chromium and "
        "chromium-driver packages (apt-get install chromium chromium-driver)"
    )


def chromium(window: tuple[int, int] = (1280, 900), languages: str | None = None) -> Any:
    """A new headless Chromium session (``selenium.webdriver.Chrome``); the caller quits it.

    ``languages`` is the person's preference, as a browser's settings hold it (``"de-DE,de"``):
    its UI language and the ``Accept-Language`` it sends. None leaves Chromium's own (English).
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary = _find("AERIE_CHROMIUM", "chromium", "chromium-browser")
    driver = _find("AERIE_CHROMEDRIVER", "chromedriver")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
        "--disable-dev-shm-usage",  # containers give /dev/shm 64 MB
        "--disable-gpu",
        f"--window-size={window[0]},{window[1]}",
    ):
        options.add_argument(argument)
    if languages:
        options.add_argument(f"--lang={languages.split(',')[0]}")
        # The header comes from this preference; --lang alone does not reach it when headless.
        options.add_experimental_option("prefs", {"intl.accept_languages": languages})
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def _gone(exc: BaseException) -> bool:
    """Whether ``exc`` says an element's page was replaced under it: Selenium's stale element,
    or Chromium's own words for the same race when it catches it one step later."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    if isinstance(exc, StaleElementReferenceException):
        return True
    return isinstance(exc, WebDriverException) and "does not belong to the document" in str(exc)


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """``check()``'s first truthy answer within ``timeout`` seconds, else AssertionError naming ``what``.

    A ``check`` that touched an element of a page being replaced (a form's answer arriving)
    raises ``StaleElementReferenceException``: that is no answer yet, and it is asked again.
    """
    from selenium.common.exceptions import WebDriverException

    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except WebDriverException as exc:
            if not _gone(exc):
                raise
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout}s (last: {last!r})")


def replaced(element: Any) -> bool:
    """Whether the page ``element`` was found on has been replaced (a navigation happened)."""
    from selenium.common.exceptions import WebDriverException

    try:
        element.is_enabled()
    except WebDriverException as exc:
        if not _gone(exc):
            raise
        return True
    return False


def element_text(driver: Any, element_id: str) -> str:
    """The text of the element with this id, or "" while there is none, also when the page it
    was found on is replaced before its text is read."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By

    try:
        found = driver.find_elements(By.ID, element_id)
        return str(found[0].text) if found else ""
    except WebDriverException as exc:
        if not _gone(exc):
            raise
        return ""


class Steps:
    """Names a journey's steps; a failing one leaves its screenshot and the page's HTML in
    ``output`` (``AERIE_TEST_OUTPUT`` when set), and says where."""

    def __init__(self, driver: Any, test: str, output: Path) -> None:
        self.driver = driver
        self.test = test
        self.output = Path(os.environ.get("AERIE_TEST_OUTPUT") or output)
        self.number = 0

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.number += 1
        try:
            yield
        except BaseException:
            self.output.mkdir(parents=True, exist_ok=True)
            stem = self.output / f"{self.test}-{self.number:02d}-{re.sub(r'[^a-z0-9]+', '-', name.lower())}"
            self.driver.save_screenshot(str(stem.with_suffix(".png")))
            stem.with_suffix(".html").write_text(self.driver.page_source)
            print(f"\nstep {self.number} ({name}) failed at {self.driver.current_url}: see {stem}.png")
            raise


def bootstrap_token(stack: LocalStack) -> str:
    """A platform token of the stack's bootstrap client, to set a journey's scene up by API."""
    secrets = stack.secrets
    r = requests.post(
        f"{stack.env()['AERIE_TENANTS_URL']}/v1/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": basic_auth(secrets.bootstrap_client_id, secrets.bootstrap_client_secret)},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def register_person(idp: str, email: str) -> None:
    """The person's claims at the development provider, as signing up there would set them."""
    r = requests.put(f"{idp}/users/{email}", json={"email": email, "email_verified": True}, timeout=10)
    assert r.status_code == 204, r.text


def submit_provider_form(driver: Any, email: str) -> None:
    """Sign in as ``email`` on the development provider's own form (the page must be showing it)."""
    from selenium.webdriver.common.by import By

    driver.find_element(By.NAME, "sub").send_keys(email)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()


def start_sign_in(driver: Any, console: str, idp: str, email: str) -> None:
    """A fresh sign-in through the console's link and the provider's form, up to where the
    provider sends the browser back."""
    from selenium.webdriver.common.by import By

    driver.get(console)
    driver.delete_all_cookies()
    driver.get(console)
    driver.find_element(By.ID, "sign-in").click()
    wait_for(lambda: driver.current_url.startswith(idp), 15, "the provider's sign-in form")
    submit_provider_form(driver, email)


def sign_in(driver: Any, console: str, idp: str, email: str, lands: str) -> None:
    """A fresh sign-in (:func:`start_sign_in`), back at the console's ``lands``."""
    start_sign_in(driver, console, idp, email)
    wait_for(lambda: driver.current_url.startswith(f"{console}{lands}"), 15, f"back at the console's {lands}")
    assert email in element_text(driver, "who")
