"""What a sweep writes: JSON, markdown tables, PNG curves and a one-file HTML report.

Plots use the detection pillar's matplotlib helpers (Agg canvas, PNG bytes); the HTML
embeds every image as base64, so the report is a single file that can be passed on.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from fakelab.atomic import atomic_output
from fakelab.detection.plots import _figure, _png

PathLike = str | os.PathLike
# matplotlib's tab20 without its pale halves first: 10 strong colours, then the 10 light ones.
_TAB20 = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
]
Series = Mapping[str, tuple[Sequence[float], Sequence[float | None]]]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.9em; } td, th { padding: 0.2em 0.7em; border-bottom: 1px solid #eee; text-align: right; }
td:first-child, th:first-child { text-align: left; }
.examples { display: flex; flex-wrap: wrap; gap: 0.8em; } figure { margin: 0; }
figcaption { font-size: 0.8em; color: #555; max-width: 192px; } .note { color: #555; font-size: 0.9em; }
"""


def cell_text(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def signed(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:+.{digits}f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(["---"] + ["---:"] * (len(headers) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def html_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def curves_png(series: Series, x_label: str, y_label: str, title: str, y_range: tuple[float, float] | None = None) -> bytes:
    """One line per series, `name -> (x values, y values)`; None values are gaps."""
    figure = _figure(8.0, 4.6)
    axes = figure.add_subplot()
    # 20 distinct colours, then dashes: a sweep has up to 17 perturbations.
    styles = ["-", "--", "-.", ":"]
    for k, (name, (xs, ys)) in enumerate(series.items()):
        ys = [math.nan if y is None else y for y in ys]
        axes.plot(
            xs, ys, marker="os^D"[(k // 10) % 4], markersize=3.5, linewidth=1.5,
            linestyle=styles[(k // 10) % 4], color=_TAB20[k % 20], label=name,
        )
    if y_range:
        axes.set_ylim(*y_range)
    axes.set_xlabel(x_label)
    axes.set_ylabel(y_label)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    return _png(figure)


def write_text(path: PathLike, text: str) -> Path:
    with atomic_output(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_bytes(path: PathLike, data: bytes) -> Path:
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json(path: PathLike, data: dict) -> Path:
    return write_text(path, json.dumps(data, indent=2) + "\n")


def html_page(title: str, sections: Sequence[tuple[str, str]]) -> str:
    """A page of (heading, inner HTML) sections."""
    body = "".join(f"<h2>{html.escape(heading)}</h2>{inner}" for heading, inner in sections)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>\n"
    )


def figure_html(png: bytes, alt: str) -> str:
    from fakelab.detection.report import png_data_uri

    return f'<img src="{png_data_uri(png)}" alt="{html.escape(alt)}" style="max-width:100%">'


def examples_html(examples: Sequence[tuple[str, str]]) -> str:
    """Figures of (caption, data URI)."""
    figures = "".join(
        f'<figure><img src="{uri}" alt="{html.escape(caption)}"><figcaption>{html.escape(caption)}</figcaption></figure>'
        for caption, uri in examples
    )
    return f'<div class="examples">{figures}</div>'


def level_series(cells: Iterable[tuple[str, int]], value: Callable[[str, int], float | None]) -> dict:
    """`perturbation -> ([0, levels...], [unperturbed value, values...])` for plots and grids;
    level 0 is the unperturbed cell ("clean", 0)."""
    cells = list(cells)
    clean = value("clean", 0)
    series = {}
    for name in dict.fromkeys(name for name, _ in cells if name != "clean"):
        levels = [level for n, level in cells if n == name]
        series[name] = ([0, *levels], [clean, *(value(name, level) for level in levels)])
    return series


def example_images(folder: PathLike, cells: Iterable[tuple[str, int]], describe: Callable[[str, int], str]) -> list[tuple[str, str]]:
    """(caption, data URI) of the example image stored for each cell that has one."""
    examples = []
    for name, level in cells:
        image = Path(folder) / "examples" / f"{name}-{level}.png"
        if image.exists():
            examples.append((describe(name, level), "data:image/png;base64," + base64.b64encode(image.read_bytes()).decode()))
    return examples


def failures_markdown(failures: Sequence[dict]) -> str:
    if not failures:
        return ""
    return "\n## Inputs skipped\n\n" + "\n".join(f"- {f['file']}: {f['error']}" for f in failures) + "\n"


def failures_section(failures: Sequence[dict]) -> list[tuple[str, str]]:
    if not failures:
        return []
    items = "".join(f"<li>{html.escape(f['file'])}: {html.escape(f['error'])}</li>" for f in failures)
    return [("Inputs skipped", f"<ul>{items}</ul>")]
