"""Headless Chromium through selenium, for tests that open regsweep's HTML output."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.conftest import skip_or_fail

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


@contextmanager
def headless_chromium(width: int = 1400, height: int = 1000) -> Iterator[Any]:
    """A selenium driver on headless Chromium with browser console logging enabled."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        skip_or_fail("selenium is not installed")
    binary = next((shutil.which(n) for n in CHROMIUM_NAMES if shutil.which(n)), None)
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        skip_or_fail(
            "chromium and chromedriver are needed: apt-get install chromium chromium-driver"
        )
    profile = tempfile.mkdtemp(prefix="regsweep-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--no-first-run",
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def full_page_screenshot(driver: Any, path: Path) -> Path:
    """Resize the window to the whole page, then save a PNG of it."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    width = driver.execute_script("return document.documentElement.scrollWidth")
    driver.set_window_size(max(width, 1200), min(int(height) + 100, 16000))
    driver.save_screenshot(str(path))
    return path
