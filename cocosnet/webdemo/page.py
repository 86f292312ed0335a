"""The web demo's Gradio page: input and exemplar uploads (or demo scenes), then the input, the
exemplar, the output and the warped exemplar side by side."""

from __future__ import annotations

import html
import os
from collections.abc import Sequence

import gradio as gr

from ..inference import DOMAINS
from .app import UPLOAD_SUFFIXES, DemoApp, DemoError

INTRO = """# CoCosNet: exemplar-based image translation
The output takes its layout from the input (a class-id mask, an edge map or a pose .npz) and its
style from the semantically corresponding parts of the exemplar photo; the warped exemplar is
that correspondence made visible. Limits: {max_mb:.1f} MB per file, {max_mpx:.1f} megapixels per
image. The examples are scenes of the demo dataset's generator (class ids 0-7)."""


def build_page(app: DemoApp, examples: Sequence[str | os.PathLike] = ()) -> gr.Blocks:
    """The page of ``app``; ``examples``: [mask, photo, mask, photo, ...] file paths."""
    # Uploads and outputs are cached by Gradio; those older than an hour are deleted.
    blocks = gr.Blocks(title="CoCosNet demo", analytics_enabled=False, delete_cache=(600, 3600))
    with blocks as page:
        gr.Markdown(INTRO.format(max_mb=app.max_upload_bytes / 2**20, max_mpx=app.max_pixels / 1e6))
        with gr.Row():
            checkpoint = gr.Dropdown(app.checkpoints, value=app.checkpoints[0], label="Model")
            domain = gr.Dropdown(list(DOMAINS), value="auto", label="Input kind")
        with gr.Row():
            kinds = list(UPLOAD_SUFFIXES)
            input_file = gr.File(label="Input", file_types=kinds, elem_id="input")
            exemplar_file = gr.File(label="Exemplar (photo)", file_types=kinds, elem_id="exemplar")
        button = gr.Button("Translate", variant="primary", elem_id="submit")
        with gr.Row():
            pictures = [
                gr.Image(
                    label=label,
                    format="png",
                    interactive=False,
                    elem_id=key,
                    buttons=["download", "fullscreen"],  # no "share": it posts to a hub
                )
                for key, label in (
                    ("shown_input", "input"),
                    ("shown_exemplar", "exemplar"),
                    ("output", "output"),
                    ("warped", "warped exemplar"),
                )
            ]
        caption = gr.Markdown(elem_id="caption")
        if examples:
            rows = [[str(m), str(p)] for m, p in zip(examples[::2], examples[1::2], strict=True)]
            # each mask with the next scene's photo: the style comes from another scene
            pairs = [[rows[i][0], rows[(i + 1) % len(rows)][1]] for i in range(len(rows))]
            gr.Examples(pairs, [input_file, exemplar_file], label="Demo scenes")

        def translate(input_path, exemplar_path, checkpoint_name, domain_name):
            try:
                result = app.translate(input_path, exemplar_path, checkpoint_name, domain_name)
            except DemoError as err:
                # the message is shown as HTML: a file name must not become markup
                message = html.escape(err.message, quote=False)
                raise gr.Error(message, print_exception=False) from None
            shown = (result.input, result.exemplar, result.output, result.warped)
            return (*shown, result.caption)

        button.click(
            translate,
            [input_file, exemplar_file, checkpoint, domain],
            [*pictures, caption],
            api_name="translate",
            concurrency_limit=1,
        )
    return page
