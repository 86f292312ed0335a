"""docs/webdemo.png: the web demo (``cocosnet demo``) over the trained demo model of a real
`make repro`, one demo scene translated, rendered in headless Chromium.

    make screenshots        # after make repro; installs Debian's chromium when missing
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cocosnet.webdemo import start_server  # noqa: E402
from tests import webdemo_browser as browser  # noqa: E402

MODEL = REPO / "models" / "demo" / "export"
OUT = REPO / "docs" / "webdemo.png"
SCENE = 1  # scene 1's mask with scene 2's photo as the exemplar


def main() -> int:
    if not (MODEL / "model.json").is_file():
        print(f"{MODEL} not found: run make repro first", file=sys.stderr)
        return 1
    os.chdir(REPO)  # the page shows the model's path as given
    server = start_server([MODEL.relative_to(REPO)], port=None)
    driver = browser.chrome(1400, 1150)
    try:
        driver.get(server.url)
        browser.pick_example(driver, SCENE)
        browser.translate(driver, (256, 256))
        png = driver.get_screenshot_as_png()
    finally:
        driver.quit()
        server.close()
    OUT.write_bytes(png)
    print(f"{OUT}: demo scene {SCENE} translated by {MODEL.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
