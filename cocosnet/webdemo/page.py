"""The web demo's one HTML page: the form, and the result of the last translation."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..inference import DOMAINS
from .forms import UPLOAD_SUFFIXES

if TYPE_CHECKING:
    from .app import DemoApp


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>CoCosNet demo</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; max-width: 70em; }}
fieldset {{ display: inline-block; vertical-align: top; margin: 0 1em 1em 0; }}
label {{ display: block; margin: .3em 0; }}
#error {{ color: #b00020; font-weight: bold; }}
figure {{ display: inline-block; margin: 0 1em 0 0; }}
figure img {{ height: 16em; max-width: 30em; object-fit: contain; border: 1px solid #ccc; }}
</style></head><body>
<h1>CoCosNet demo</h1>
<form id="form" method="post" action="/translate" enctype="multipart/form-data">
<fieldset><legend>Model</legend>
<label>Checkpoint <select name="checkpoint">{checkpoints}</select></label>
<label>Input kind <select name="domain">{domains}</select></label></fieldset>
<fieldset><legend>Input (mask, edges or pose .npz)</legend>
<label>Upload <input type="file" id="input" name="input" accept="{accept}"></label>
<label>or example <select name="input_example">{input_examples}</select></label></fieldset>
<fieldset><legend>Exemplar (photo)</legend>
<label>Upload <input type="file" id="exemplar" name="exemplar" accept="{accept}"></label>
<label>or example <select name="exemplar_example">{exemplar_examples}</select></label></fieldset>
<p>An upload replaces the example. Limits: {max_mb:.1f} MB per request, {max_mpx:.1f} megapixels
per image. Examples: demo-dataset scenes (class ids 0-7).</p>
<button type="submit" id="submit">Translate</button>
</form>
<p id="error">{error}</p>
{results}
<script>
document.getElementById("form").addEventListener("submit", (event) => {{
  let total = 0;
  for (const input of document.querySelectorAll("input[type=file]")) {{
    for (const file of input.files) total += file.size;
  }}
  if (total > {max_bytes}) {{
    event.preventDefault();
    document.getElementById("error").textContent =
      "upload of " + (total / 1048576).toFixed(1) + " MB exceeds the limit of {max_mb:.1f} MB";
  }}
}});
</script></body></html>
"""


def _options(values: Sequence[str], selected: str | None, none: str | None = None) -> str:
    items = ([("", none)] if none is not None else []) + [(v, v) for v in values]
    return "".join(
        f'<option value="{html.escape(v)}"{" selected" if v == selected else ""}>'
        f"{html.escape(label)}</option>"
        for v, label in items
    )


def render_page(app: DemoApp, result: dict | None = None, error: str | None = None) -> str:
    """The form, and the output and warped exemplar of ``result`` side by side."""
    names = list(app.examples)
    results = ""
    if result is not None:
        size = f"{result['width']}x{result['height']}"
        results = (
            f'<div id="results"><p>{html.escape(result["checkpoint"])}, {size}, '
            f"{result['seconds']:.2f} s</p>"
            + "".join(
                f'<figure><img id="{key}" alt="{caption}" '
                f'src="data:image/png;base64,{result[key + "_png"]}"><figcaption>{caption}'
                "</figcaption></figure>"
                for key, caption in (("output", "output"), ("warped", "warped exemplar"))
            )
            + "</div>"
        )
    return _PAGE.format(
        checkpoints=_options(app.checkpoints, (result or {}).get("checkpoint", app.checkpoints[0])),
        domains=_options(DOMAINS, (result or {}).get("domain", "auto")),
        accept=",".join(UPLOAD_SUFFIXES),
        input_examples=_options(names, names[0] if names else None, "(none)"),
        exemplar_examples=_options(names, names[1 % len(names)] if names else None, "(none)"),
        max_mb=app.max_upload_bytes / 2**20,
        max_mpx=app.max_pixels / 1e6,
        max_bytes=app.max_upload_bytes,
        error=html.escape(error or ""),
        results=results,
    )
