"""The web demo (cocosnet.webdemo, ``cocosnet demo``): a loopback server over a tiny random model,
driven with urllib multipart uploads; one end-to-end run in headless Chromium (slow, needs Debian's
chromium and chromium-driver and the selenium package) takes a screenshot in its own folder."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import os
import re
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cocosnet.cli import main
from cocosnet.formats.demo_scenes import render_scene
from cocosnet.webdemo import (
    DemoApp,
    DemoServer,
    RequestError,
    example_scenes,
    find_checkpoints,
    is_loopback,
    make_server,
    parse_multipart,
)

from .helpers import single_thread, tiny_model

MAX_UPLOAD = 256 * 1024
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
TRAINED_DEMO = Path(__file__).resolve().parents[1] / "models" / "demo" / "export"


one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """The demo architecture (64 x 64, 8 classes), randomly initialised."""
    return tiny_model(tmp_path_factory.mktemp("models") / "demo" / "export")


def _start(checkpoints: list[Path], **kwargs) -> Iterator[DemoServer]:
    server = make_server(checkpoints, port=0, quiet=True, **kwargs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture(scope="module")
def server(model: Path) -> Iterator[DemoServer]:
    yield from _start([model], max_upload_bytes=MAX_UPLOAD, examples=example_scenes(2, 64))


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _mask(height: int, width: int) -> bytes:
    """Blocky class-id map with ids 0..7."""
    cells = np.random.default_rng(0).integers(0, 8, (height // 8 + 1, width // 8 + 1))
    return _png(cells.astype(np.uint8).repeat(8, 0).repeat(8, 1)[:height, :width])


def _photo(height: int, width: int) -> bytes:
    return _png(np.random.default_rng(1).integers(0, 256, (height, width, 3), dtype=np.uint8))


def _multipart(fields: dict[str, str | tuple[str, bytes]]) -> tuple[str, bytes]:
    """(Content-Type, body) of a multipart/form-data upload, as a browser sends it."""
    boundary = uuid.uuid4().hex
    body = b""
    for name, value in fields.items():
        body += f"--{boundary}\r\n".encode()
        if isinstance(value, tuple):
            body += (
                f'Content-Disposition: form-data; name="{name}"; filename="{value[0]}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode() + value[1]
        else:
            body += f'Content-Disposition: form-data; name="{name}"\r\n\r\n{value}'.encode()
        body += b"\r\n"
    return f"multipart/form-data; boundary={boundary}", body + f"--{boundary}--\r\n".encode()


def _post(server: DemoServer, path: str, fields: dict) -> tuple[int, bytes]:
    content_type, body = _multipart(fields)
    request = urllib.request.Request(
        server.url + path.lstrip("/"), data=body, headers={"Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def _png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data), formats=["PNG"]) as img:
        img.load()
        return img.size


def test_api_translates_to_the_input_size(server):
    fields = {"input": ("mask.png", _mask(40, 56)), "exemplar": ("photo.png", _photo(48, 48))}
    status, body = _post(server, "/api/translate", fields)
    assert status == 200, body
    result = json.loads(body)
    assert (result["width"], result["height"]) == (56, 40)
    for key in ("output_png", "warped_png"):
        assert _png_size(base64.b64decode(result[key])) == (56, 40)


def test_page_shows_output_and_warped_for_examples(server):
    status, body = _post(
        server, "/translate", {"input_example": "scene0", "exemplar_example": "scene1"}
    )
    assert status == 200
    images = dict(
        re.findall(r'<img id="(\w+)"[^>]* src="data:image/png;base64,([^"]+)"', body.decode())
    )
    assert set(images) == {"output", "warped"}
    assert all(_png_size(base64.b64decode(v)) == (64, 64) for v in images.values())


def test_truncated_png_is_400_with_one_line_reason(server):
    fields = {"input": ("mask.png", _mask(40, 56)[:60]), "exemplar": ("photo.png", _photo(32, 32))}
    status, body = _post(server, "/api/translate", fields)
    assert status == 400
    assert json.loads(body) == {"error": "input/mask.png: truncated or corrupt image data"}
    status, body = _post(server, "/translate", fields)
    assert status == 400
    assert '<p id="error">input/mask.png: truncated or corrupt image data</p>' in body.decode()


def test_over_limit_upload_is_413(server):
    fields = {"input": ("mask.png", b"\0" * MAX_UPLOAD), "exemplar": ("photo.png", b"x")}
    status, body = _post(server, "/api/translate", fields)
    assert status == 413
    assert json.loads(body)["error"] == "upload of 0.3 MB exceeds the limit of 0.2 MB"


def test_bad_requests_are_400(server, model):
    photo = ("photo.png", _photo(32, 32))
    cases = {
        "unknown checkpoint '/etc'": {"checkpoint": "/etc", "input_example": "scene0"},
        "no input: upload a file or pick an example": {"exemplar": photo},
        "input/notes.txt: unsupported file type": {
            "input": ("notes.txt", b"hi"),
            "exemplar": photo,
        },
        "has 8 classes": {
            "input": ("big.png", _png(np.full((16, 16), 9, np.uint8))),
            "exemplar": photo,
        },
    }
    for expected, fields in cases.items():
        status, body = _post(server, "/api/translate", fields)
        assert status == 400 and expected in json.loads(body)["error"], body


def test_index_lists_checkpoint_and_examples(server, model):
    with urllib.request.urlopen(server.url, timeout=30) as response:
        page = response.read().decode()
    assert f'<option value="{model}" selected>' in page
    assert '<option value="scene1" selected>scene1</option>' in page
    with pytest.raises(urllib.error.HTTPError, match="404"):
        urllib.request.urlopen(server.url + "nothing", timeout=30)


def test_pixel_limits_checked_before_decoding(model, tmp_path):
    app = DemoApp([model], max_pixels=1000, examples={})
    for name, data in (("mask.png", _mask(40, 40)), ("pose.npz", None)):
        if data is None:
            buf = io.BytesIO()
            np.savez(buf, pose=np.zeros((40, 40, 20), np.uint8))
            data = buf.getvalue()
        with pytest.raises(RequestError, match="exceeds"):
            app.translate({"input": (name, data), "exemplar": ("p.png", _photo(8, 8))})


def test_multipart_keeps_binary_parts():
    data = bytes(range(256)) * 4 + b"\r\n--\r\n\r\n"
    content_type, body = _multipart({"a": "text", "f": ("x.png", data), "g": ("e.png", b"")})
    fields = parse_multipart(content_type, body)
    assert fields == {"a": (None, b"text"), "f": ("x.png", data), "g": ("e.png", b"")}
    with pytest.raises(RequestError, match="multipart"):
        parse_multipart("application/json", body)


def test_checkpoints_loopback_and_cli(model, tmp_path, capsys):
    for name, has_json in (("a", True), ("b", False)):
        (tmp_path / name / "export").mkdir(parents=True)
        if has_json:
            (tmp_path / name / "export" / "model.json").write_text("{}")
    assert find_checkpoints(tmp_path) == [tmp_path / "a" / "export"]
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and not is_loopback("0.0.0.0")
    with pytest.warns(UserWarning, match="not loopback"):
        make_server([model], host="0.0.0.0", port=0, examples={}).server_close()
    assert main(["demo", "--checkpoint", str(tmp_path / "b" / "export"), "--port", "0"]) == 2
    assert "no model.json" in capsys.readouterr().err


def _selenium_missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} missing: `make test-ui` installs Debian's chromium and chromium-driver"
    if importlib.util.find_spec("selenium") is None:
        return "the selenium package is missing (pip install -e '.[test]')"
    return None


@pytest.mark.slow
@pytest.mark.skipif(_selenium_missing() is not None, reason=str(_selenium_missing()))
def test_browser_upload_shows_results(model, tmp_path, monkeypatch):
    """Headless Chromium uploads two files and gets the two result images at the input's size."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    monkeypatch.setenv("SE_AVOID_STATS", "true")
    # The trained demo model (make repro) gives a meaningful screenshot; the random one works too.
    monkeypatch.chdir(TRAINED_DEMO.parents[2])  # the page shows the path as given
    trained = (TRAINED_DEMO / "model.json").is_file()
    ckpt = TRAINED_DEMO.relative_to(TRAINED_DEMO.parents[2]) if trained else model
    photo, _, _ = render_scene(7, 0, 160)
    _, label, _ = render_scene(3, 0, 160)
    files = {"input": tmp_path / "mask.png", "exemplar": tmp_path / "photo.png"}
    files["input"].write_bytes(_png(label[:, 16:136]))  # 120 wide, 160 high
    files["exemplar"].write_bytes(_png(photo))
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1100,1000",
    ):
        options.add_argument(arg)
    servers = _start([ckpt], examples=example_scenes(2, 64))
    server = next(servers)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.get(server.url)
        for name, path in files.items():
            driver.find_element(By.ID, name).send_keys(str(path))
        driver.find_element(By.ID, "submit").click()
        WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.ID, "warped"))
        for key in ("output", "warped"):
            src = driver.find_element(By.ID, key).get_attribute("src")
            assert src.startswith("data:image/png;base64,")
            assert _png_size(base64.b64decode(src.split(",", 1)[1])) == (120, 160)
        assert driver.find_element(By.ID, "error").text == ""
        driver.save_screenshot(str(tmp_path / "webdemo.png"))  # never a tracked file
    finally:
        driver.quit()
        servers.close()
