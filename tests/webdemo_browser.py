"""Headless Chromium driving the web demo's Gradio page (selenium): used by the browser test and
by ``make screenshots`` (docs/webdemo.png from the trained demo model)."""

from __future__ import annotations

import os
from pathlib import Path

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
PICTURES = ("shown_input", "shown_exemplar", "output", "warped")  # the page's result elem_ids


def chrome(width: int = 1400, height: int = 1000):
    """Headless Chromium with the flags this closed network needs (no background requests)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_AVOID_STATS", "true")  # selenium's own usage statistics
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--hide-scrollbars",
        f"--window-size={width},{height}",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def natural_size(driver, elem_id: str) -> tuple[int, int] | None:
    """(width, height) of the picture shown in component ``elem_id``, None while it loads."""
    size = driver.execute_script(
        "const img = document.querySelector(`#${arguments[0]} img`);"
        "return img && img.complete && img.naturalWidth ? [img.naturalWidth, img.naturalHeight]"
        " : null;",
        elem_id,
    )
    return tuple(size) if size else None


def shown_file(driver, elem_id: str) -> str:
    """The file name a File component shows (its name and suffix are separate elements)."""
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, elem_id).text.replace("\n", "")


def upload(driver, files: dict[str, str | os.PathLike], timeout: float = 60) -> None:
    """Put ``{"input": path, "exemplar": path}`` into the page's file fields."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, timeout)
    for name, path in files.items():
        field = (By.CSS_SELECTOR, f"#{name} input[type=file]")
        wait.until(lambda d, f=field: d.find_elements(*f))
        driver.find_element(*field).send_keys(os.fspath(path))
        wait.until(lambda d, n=name, p=path: Path(p).name in shown_file(d, n))


def pick_example(driver, row: int, timeout: float = 60) -> None:
    """Click demo scene ``row`` of the examples table and wait until it fills the fields."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, timeout)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "tr.tr-body"))
    driver.find_elements(By.CSS_SELECTOR, "tr.tr-body")[row].click()
    wait.until(lambda d: f"scene{row}_mask.png" in shown_file(d, "input"))


def translate(driver, expected_size: tuple[int, int], timeout: float = 120) -> None:
    """Click Translate and wait until the output has ``expected_size`` (width, height)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.find_element(By.ID, "submit").click()
    WebDriverWait(driver, timeout).until(
        lambda d: (
            all(natural_size(d, k) for k in PICTURES[1:])
            and natural_size(d, "output") == expected_size
        )
    )
