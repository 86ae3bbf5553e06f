"""Plots made small enough to travel inside Markdown: palette PNGs as `data:` URIs, within a budget.

A UI that renders Markdown but cannot reach the report's folder (Dagster's asset metadata, a
run description) shows a plot only when the image travels inside the text. Report plots are
line drawings on white with a few colours, so a 256-colour palette keeps them visually the same
at a third of the bytes; a frame grid (top clips) shrinks less. `report_html` turns such Markdown
into one self-contained HTML page (markdown-it-py, CommonMark plus tables): MLflow's artifact
viewer draws HTML with its images, while its Markdown view drops `data:` images.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from html import escape

from markdown_it import MarkdownIt
from PIL import Image

from vad_core.errors import VADInputError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def compact_png(png: bytes, max_width: int | None = 900, colors: int = 256) -> bytes:
    """The same picture as a palette PNG of at most `colors` colours and `max_width` pixels wide
    (aspect kept; None keeps the size). Not a PNG -> `VADInputError`."""
    if not png.startswith(PNG_SIGNATURE):
        raise VADInputError("compact_png: the bytes are not a PNG image")
    with Image.open(io.BytesIO(png)) as image:
        rgb = image.convert("RGB")
    if max_width and rgb.width > max_width:
        rgb = rgb.resize((max_width, max(1, round(rgb.height * max_width / rgb.width))), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    rgb.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        out, format="PNG", optimize=True
    )
    return out.getvalue()


def png_data_uri(png: bytes) -> str:
    """`data:image/png;base64,...` for Markdown's `![alt](...)`."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def embed_plots(plots: Mapping[str, bytes], budget_bytes: int = 1_500_000) -> dict[str, str | None]:
    """`{name: data URI, or None once the budget is spent}`, in the order given (put the plots that
    matter most first). The budget counts the URIs' characters: what a metadata store keeps."""
    out: dict[str, str | None] = {}
    spent = 0
    for name, png in plots.items():
        uri = png_data_uri(compact_png(png))
        if spent + len(uri) > budget_bytes:
            out[name] = None
            continue
        out[name] = uri
        spent += len(uri)
    return out


_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}"
    "th:first-child,td:first-child{text-align:left}img{max-width:100%;display:block;margin:1em 0}"
    "code{background:#f4f4f4;padding:0 .2em}"
)


def report_html(markdown: str, title: str) -> str:
    """A standalone HTML page of `markdown` (images as given: embed them first to travel with it)."""
    body = MarkdownIt("commonmark").enable("table").render(markdown)
    return (
        f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{_STYLE}</style></head>\n<body>\n{body}</body></html>\n"
    )


__all__ = ["PNG_SIGNATURE", "compact_png", "embed_plots", "png_data_uri", "report_html"]
