"""Building blocks of a self-contained HTML page: no external CSS, JS, fonts or images.

Every text that comes from data (class names, paths, settings) goes through :func:`esc`.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Any

from imgcls.evaluation.fonts import font_face_css
from imgcls.evaluation.gallery import ShownImage
from imgcls.rundir import utf8_name

STYLE = """
body{font-family:"imgcls-hangul",system-ui,-apple-system,"Segoe UI",sans-serif;
max-width:1150px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{margin-bottom:.1em}h2{margin-top:2em;border-bottom:1px solid #e3e3e3;padding-bottom:.2em}
h2 small{color:#888;font-weight:normal;font-size:.7em;margin-left:.5em}
.sub{color:#555;margin-top:0}.note{color:#555;font-size:.92em;max-width:60em}
table{border-collapse:collapse;margin:1em 0;font-size:.93em}
td,th{border:1px solid #ddd;padding:4px 10px;text-align:left;white-space:nowrap}th{background:#f4f4f4}
td.n,th.n{text-align:right}.scroll{overflow-x:auto}tr.weak td{background:#fff4f2}tr.best td{background:#eef8ec}
.cards{display:flex;flex-wrap:wrap;gap:1em;margin:1em 0}
.cards div{background:#f4f7fb;padding:.7em 1.1em;border-radius:8px;min-width:9em}
.cards b{display:block;font-size:1.6em}.cards span{color:#666;font-size:.85em}
.summary{background:#fbfbf3;border-left:4px solid #d6c75a;padding:.6em 1em}
img.plot{max-width:100%}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(130px,1fr));gap:10px}
.gallery figure{margin:0;padding:6px;border-radius:6px;border:3px solid #ccc;font-size:.8em;text-align:center;
overflow-wrap:anywhere}
.gallery figure.right{border-color:#59a14f}.gallery figure.wrong{border-color:#e15759}
.gallery img{width:96px;height:96px;object-fit:contain;image-rendering:auto;background:#eee;display:block;margin:0 auto}
.gallery img.cam{margin-top:4px}
.gallery .missing{width:96px;height:96px;line-height:96px;background:#eee;color:#999;margin:0 auto}
.gallery figcaption b{display:block}.gallery .file{color:#888}
details{margin:1em 0}summary{cursor:pointer;color:#336}
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        small = value != 0 and abs(value) < 1e-3  # learning rates: 3.00e-05, not 0.0000
        return f"{value:.2e}" if small else f"{value:.{digits}f}"
    return str(value)


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def rate(value: float | None) -> str:
    """Throughput: '0.58', '12.3', '1,204.5'."""
    if value is None:
        return "–"
    return f"{value:.2f}" if value < 10 else f"{value:,.1f}"


def duration(seconds: float | None) -> str:
    """'1m 43s' like the seeds' comparison tables; '12.3s' under a minute."""
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}m {secs}s" if hours else f"{minutes}m {secs}s"


def heading(english: str, korean: str = "") -> str:
    return f"<h2>{esc(english)}" + (f"<small>{esc(korean)}</small>" if korean else "") + "</h2>"


def note(text: str) -> str:
    return f"<p class='note'>{esc(text)}</p>"


NUMBER = re.compile(r"^[-+]?[\d.,]+(e[-+]?\d+)?(%|s| \(|m |h |$)")  # 0.941, 94.1% (epoch 3), 5m 28s, 3.00e-05


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, (int, float)) or bool(NUMBER.match(fmt(value)))


def table(header: list[str], rows: list[list[Any]], row_classes: list[str] | None = None) -> str:
    """Numbers right-aligned (and their column's heading), text left; ``row_classes`` styles rows ('weak', 'best')."""
    numeric = [[_is_number(c) for c in row] for row in rows]
    columns = [bool(rows) and all(flags[i] for flags in numeric if i < len(flags)) for i in range(len(header))]
    head = "".join(f"<th class='n'>{esc(title)}</th>" if columns[i] else f"<th>{esc(title)}</th>"
                   for i, title in enumerate(header))
    body = []
    for index, row in enumerate(rows):
        css = f" class='{esc(row_classes[index])}'" if row_classes and row_classes[index] else ""
        cells = "".join(f"<td class='n'>{esc(fmt(c))}</td>" if flag else f"<td>{esc(fmt(c))}</td>"
                        for c, flag in zip(row, numeric[index]))
        body.append(f"<tr{css}>{cells}</tr>")
    return f"<div class='scroll'><table><tr>{head}</tr>{''.join(body)}</table></div>"


def cards(items: list[tuple[str, str, str]]) -> str:
    """Headline figures: (label, value, small hint)."""
    inner = "".join(f"<div>{esc(label)}<b>{esc(value)}</b><span>{esc(hint)}</span></div>"
                    for label, value, hint in items)
    return f"<div class='cards'>{inner}</div>"


def png(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"<img class='plot' alt='{esc(alt)}' src='data:image/png;base64,{data}'>"


def gallery(images: list[ShownImage]) -> str:
    figures = []
    for item in images:
        picture = (f"<img alt='{esc(item.name)}' src='{item.thumbnail}'>" if item.thumbnail
                   else "<div class='missing'>unreadable</div>")
        if item.overlay:
            picture += f"<img class='cam' alt='where the model looked' title='Grad-CAM' src='{item.overlay}'>"
        verdict = "right" if item.correct else "wrong"
        detail = (f"<b>{esc(item.predicted)} {percent(item.confidence)}</b>true: {esc(item.true)}"
                  + ("" if item.correct else f" ({percent(item.true_prob)})"))
        figures.append(f"<figure class='{verdict}' title='{esc(item.path or item.name)}'>{picture}"
                       f"<figcaption>{detail}<div class='file'>{esc(item.name)}</div></figcaption></figure>")
    return f"<div class='gallery'>{''.join(figures)}</div>"


def page(title: str, body: str) -> str:
    """The whole document; Korean (any non-ASCII text) gets an embedded font cut to the characters used."""
    title, body = utf8_name(title), utf8_name(body)  # file names that are not UTF-8, shown with \xNN escapes
    fonts = font_face_css(title + body)
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width,initial-scale=1'><title>{esc(title)}</title>"
            f"<style>{fonts}{STYLE}</style></head><body>{body}</body></html>\n")
