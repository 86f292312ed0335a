"""The web demo (cocosnet.webdemo, ``cocosnet demo``): a Gradio page on loopback over a tiny
random model, driven with gradio_client as scripts drive it; the checks of DemoApp directly; one
end-to-end run in headless Chromium (slow, needs Debian's chromium and chromium-driver and the
selenium package) that writes its screenshot in its own folder."""

from __future__ import annotations

import html
import importlib.util
import io
import json
import os
import signal
import subprocess
import sys
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
from cocosnet.inference import Translator, translate_files
from cocosnet.visualize import colour_labels
from cocosnet.webdemo import (
    DemoApp,
    DemoError,
    DemoServer,
    find_checkpoints,
    is_loopback,
    start_server,
    warn_unless_loopback,
    write_examples,
)

from . import webdemo_browser as browser
from .helpers import single_thread, tiny_model
from .webdemo_browser import CHROMEDRIVER, CHROMIUM

MAX_UPLOAD = 256 * 1024


one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """The demo architecture (64 x 64, 8 classes), randomly initialised."""
    return tiny_model(tmp_path_factory.mktemp("models") / "demo" / "export")


@pytest.fixture(scope="module")
def server(model: Path) -> Iterator[DemoServer]:
    running = start_server([model], port=None, max_upload_bytes=MAX_UPLOAD, example_size=64)
    try:
        yield running
    finally:
        running.close()


@pytest.fixture(scope="module")
def client(server: DemoServer):
    from gradio_client import Client

    return Client(server.url, verbose=False)


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _mask(height: int, width: int) -> np.ndarray:
    """Blocky class-id map with ids 0..7."""
    cells = np.random.default_rng(0).integers(0, 8, (height // 8 + 1, width // 8 + 1))
    return cells.astype(np.uint8).repeat(8, 0).repeat(8, 1)[:height, :width]


def _photo(height: int, width: int) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _file(folder: Path, name: str, data: bytes | np.ndarray) -> str:
    path = folder / name
    path.write_bytes(_png(data) if isinstance(data, np.ndarray) else data)
    return str(path)


def _read(path: str) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def test_page_translates_as_translate_files(client, model, tmp_path):
    """Input, exemplar, output and warped exemplar come back at the input's size, the output
    equal to the command line's translation of the same files."""
    from gradio_client import handle_file

    mask, photo = (
        _file(tmp_path, "mask.png", _mask(40, 56)),
        _file(tmp_path, "p.png", _photo(48, 48)),
    )
    shown, exemplar, output, warped, caption = client.predict(
        handle_file(mask), handle_file(photo), str(model), "auto", api_name="/translate"
    )
    assert _read(shown).tolist() == colour_labels(_mask(40, 56), 8).tolist()
    assert _read(exemplar).tolist() == _photo(48, 48).tolist()
    assert _read(output).shape == _read(warped).shape == (40, 56, 3)
    expected = translate_files(Translator(model), mask, photo, tmp_path / "cli.png")
    assert np.array_equal(_read(output), expected)
    assert caption.startswith(f"{model}, label, 56x40, ")


def test_bad_uploads_get_one_line_reasons_through_the_page(client, model, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    photo = handle_file(_file(tmp_path, "p.png", _photo(32, 32)))
    cases = (
        ("mask.png", _png(_mask(40, 56))[:60], "input/mask.png: truncated or corrupt image data"),
        ("empty.png", b"", "input/empty.png: empty file (0 bytes)"),
        ("ids.png", np.full((16, 16), 9, np.uint8), "largest class id is 9, but the model has 8"),
    )
    for name, data, expected in cases:
        upload = handle_file(_file(tmp_path, name, data))
        with pytest.raises(AppError) as err:
            client.predict(upload, photo, str(model), "auto", api_name="/translate")
        assert expected in str(err.value) and "\n" not in str(err.value), err.value


def test_refusals_of_the_app(model, tmp_path):
    app = DemoApp([model], max_pixels=1000)
    photo = _file(tmp_path, "p.png", _photo(8, 8))
    mask = _file(tmp_path, "m.png", _mask(16, 16))
    npz = io.BytesIO()
    np.savez(npz, pose=np.zeros((40, 40, 20), np.uint8))
    cases = {
        "unknown checkpoint '/etc'": (mask, photo, "/etc", None),
        "unknown domain 'sketch'": (mask, photo, None, "sketch"),
        "no input: upload a file or pick an example": (None, photo, None, None),
        "no exemplar: upload a file or pick an example": (mask, "", None, None),
        "input/notes.txt: unsupported file type": (
            _file(tmp_path, "notes.txt", b"hi"),
            photo,
            None,
            None,
        ),
        "40x40 pixels exceeds the limit of 1000": (
            _file(tmp_path, "wide.png", _mask(40, 40)),
            photo,
            None,
            None,
        ),
        "pose array (40, 40, 20) exceeds": (
            _file(tmp_path, "pose.npz", npz.getvalue()),
            photo,
            None,
            None,
        ),
        "input/gone.png: cannot read the upload": (str(tmp_path / "gone.png"), photo, None, None),
    }
    for expected, args in cases.items():
        with pytest.raises(DemoError) as err:
            app.translate(*args)
        assert expected in err.value.message, (expected, err.value.message)
    small = DemoApp([model], max_upload_bytes=1000)
    with pytest.raises(DemoError, match="input/big.png: 1,001 bytes exceed the limit of 1,000"):
        small.translate(_file(tmp_path, "big.png", b"\0" * 1001), photo)


def test_over_limit_upload_is_413(server):
    """Gradio enforces the per-file limit on the upload itself (the browser checks it first)."""
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="m.png"\r\n'
            f"Content-Type: image/png\r\n\r\n"
        ).encode()
        + b"\0" * (MAX_UPLOAD + 1)
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        server.url + "gradio_api/upload",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=60)
    assert err.value.code == 413


def test_page_lists_models_domains_and_demo_scenes(server, model):
    with urllib.request.urlopen(server.url + "config", timeout=30) as response:
        config = json.load(response)
    props = {c["props"].get("label"): c["props"] for c in config["components"]}
    assert props["Model"]["choices"] == [[str(model), str(model)]]
    assert ["photo-edges", "photo-edges"] in props["Input kind"]["choices"]
    samples = props["Demo scenes"]["samples"]
    assert len(samples) == 4 and all(len(row) == 2 for row in samples)
    ids = {c["props"].get("elem_id") for c in config["components"]}
    assert {"input", "exemplar", "submit", "shown_input", "output", "warped"} <= ids


def test_examples_are_demo_scenes(tmp_path):
    paths = write_examples(tmp_path, count=2, size=32)
    assert [p.name for p in paths] == [
        "scene0_mask.png",
        "scene0_photo.png",
        "scene1_mask.png",
        "scene1_photo.png",
    ]
    photo, mask, _ = render_scene(1, 0, 32)
    assert np.array_equal(np.asarray(Image.open(paths[2])), mask) and mask.max() < 8
    assert np.array_equal(_read(str(paths[3])), photo)


def test_error_markup_is_escaped(model, tmp_path, monkeypatch):
    """A reason shown as HTML in the page cannot carry markup."""
    import gradio as gr

    from cocosnet.webdemo import build_page

    app = DemoApp([model])
    monkeypatch.setattr(app, "translate", lambda *a: (_ for _ in ()).throw(DemoError("<b>x</b>")))
    page = build_page(app)
    translate = next(fn.fn for fn in page.fns.values() if fn.api_name == "translate")
    with pytest.raises(gr.Error) as err:
        translate(None, None, str(model), "auto")
    assert err.value.message == html.escape("<b>x</b>", quote=False)


def test_checkpoints_loopback_and_cli(model, tmp_path, capsys):
    for name, has_json in (("a", True), ("b", False)):
        (tmp_path / name / "export").mkdir(parents=True)
        if has_json:
            (tmp_path / name / "export" / "model.json").write_text("{}")
    assert find_checkpoints(tmp_path) == [tmp_path / "a" / "export"]
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and not is_loopback("0.0.0.0")
    assert main(["demo", "--checkpoint", str(tmp_path / "b" / "export"), "--port", "0"]) == 2
    assert "no model.json" in capsys.readouterr().err


def test_non_loopback_host_is_warned(monkeypatch):
    """start_server warns before it binds (checked without binding every interface)."""
    with pytest.warns(UserWarning, match="not loopback"):
        warn_unless_loopback("0.0.0.0")
    monkeypatch.setattr("cocosnet.webdemo.server.DemoApp", lambda *a, **k: 1 / 0)
    with pytest.warns(UserWarning, match="not loopback"), pytest.raises(ZeroDivisionError):
        start_server(["m"], host="0.0.0.0")


def _selenium_missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} missing: `make test-ui` installs Debian's chromium and chromium-driver"
    if importlib.util.find_spec("selenium") is None:
        return "the selenium package is missing (pip install -e '.[test]')"
    return None


@pytest.mark.slow
@pytest.mark.skipif(_selenium_missing() is not None, reason=str(_selenium_missing()))
def test_browser_upload_and_example(model, tmp_path):
    """Headless Chromium uploads two files, then picks a demo scene; each time the four pictures
    appear (the results at the input's size), no error shows, and the page asks nothing of any
    host but the demo's own."""
    from selenium.webdriver.common.by import By

    photo, _, _ = render_scene(7, 0, 160)
    _, label, _ = render_scene(3, 0, 160)
    files = {
        "input": _file(tmp_path, "mask.png", label[:, 16:136]),  # 120 wide, 160 high
        "exemplar": _file(tmp_path, "photo.png", photo),
    }
    server = start_server([model], port=None, example_size=64)
    driver = browser.chrome()
    try:
        driver.get(server.url)
        browser.upload(driver, files)
        browser.translate(driver, (120, 160))
        assert browser.natural_size(driver, "warped") == (120, 160)
        assert browser.natural_size(driver, "shown_input") == (120, 160)
        assert browser.natural_size(driver, "shown_exemplar") == (160, 160)
        browser.pick_example(driver, 0)
        browser.translate(driver, (64, 64))
        assert not driver.find_elements(By.CSS_SELECTOR, ".toast-body.error")
        resources = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
        )
        origin = server.url.rstrip("/")
        assert resources and all(r.startswith((origin, "data:", "blob:")) for r in resources)
        driver.save_screenshot(str(tmp_path / "webdemo.png"))  # never a tracked file
    finally:
        driver.quit()
        server.close()


@pytest.mark.parametrize(
    "signum", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)]
)
def test_cli_serves_until_signalled(model, tmp_path, signum):
    """`cocosnet demo` prints where it serves, answers there, and a signal closes it cleanly:
    exit 0, the port freed, its example files removed."""
    env = {**os.environ, "TMPDIR": str(tmp_path), "GRADIO_TEMP_DIR": str(tmp_path / "gradio")}
    cmd = [sys.executable, "-m", "cocosnet.cli", "demo", "--checkpoint", str(model), "--port", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        url = json.loads(proc.stdout.readline())["serving"]
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.status == 200 and "CoCosNet" in response.read().decode()
        assert list(tmp_path.glob("cocosnet-demo-examples-*/scene0_mask.png"))
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert "Traceback" not in err and not list(tmp_path.glob("cocosnet-demo-examples-*"))
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=5)
