"""Self-contained HTML reports: a folder with ``index.html`` and ``assets/``, readable offline in any browser.

A report is a title and a list of :class:`Section` s, each a heading and blocks: :class:`Text`, :class:`Table`,
:class:`Image` (PNG bytes, e.g. from :mod:`avworld.viz.plots`, or a file) and :class:`Video` (an MP4 with sound, see
:func:`avworld.viz.video.write_video`). Images and videos are copied into ``assets/``; the style sheet is inline;
nothing is loaded from the network. Every string that reaches the page (titles, captions, cells, config values,
scene names) goes through :func:`html.escape`, so a name like ``<script>`` shows as text and runs nothing.

:func:`prediction_sections`, :func:`navigation_sections` and :func:`tokenizer_sections` turn the result files of
``avworld eval`` (``prediction.json``, ``navigation.json``, ``tokenizer.json``, as dicts) into sections.
"""

from __future__ import annotations

import html
import io
import math
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml
from matplotlib.image import imsave

from avworld.viz.plots import horizon_plot
from avworld.viz.video import first_frame

Cell = str | int | float | None
VIDEO_TYPES = {".mp4": "video/mp4", ".webm": "video/webm"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".svg")
STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1100px; padding: 1.5em; color: #1d1d21; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.8em; }
nav ol { columns: 2; } figure { margin: 1em 0; } figcaption { color: #555; font-size: 0.9em; }
table { border-collapse: collapse; margin: 1em 0; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding-bottom: 0.3em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; } th { background: #f4f4f6; }
td.num { text-align: right; } pre { background: #f4f4f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
img, video { max-width: 100%; } video { background: #000; }
"""


@dataclass(frozen=True)
class Text:
    """A paragraph; ``pre=True`` keeps line breaks and spacing in a monospace block (a config, a text table)."""

    body: str
    pre: bool = False


@dataclass(frozen=True)
class Table:
    """A table: ``columns`` headers and ``rows`` of cells (text, numbers, or None for "—"), one cell per column."""

    columns: Sequence[str]
    rows: Sequence[Sequence[Cell]]
    caption: str = ""

    def __post_init__(self) -> None:
        for i, row in enumerate(self.rows):
            if len(row) != len(self.columns):
                raise ValueError(f"rows: row {i} has {len(row)} cells, the table {len(self.columns)} columns")


@dataclass(frozen=True)
class Image:
    """A picture: PNG bytes, or an image file (.png, .jpg, .gif, .svg); copied into ``assets/``."""

    source: bytes | str | os.PathLike[str]
    caption: str = ""


@dataclass(frozen=True)
class Video:
    """A video file (.mp4 or .webm) copied into ``assets/`` and shown with the browser's controls; its first frame, saved
    as a PNG beside it, is the poster the page shows before it plays."""

    path: str | os.PathLike[str]
    caption: str = ""


Block = Text | Table | Image | Video


@dataclass(frozen=True)
class Section:
    """A heading and its blocks, in order."""

    title: str
    blocks: Sequence[Block] = ()


def write_report(out_dir: str | os.PathLike[str], title: str, sections: Sequence[Section], intro: str = "") -> Path:
    """Write ``out_dir/index.html`` and ``out_dir/assets/``: ``title``, an optional ``intro`` paragraph, a table of
    contents and ``sections``. Returns the path of ``index.html`` (written last, whole or not at all)."""
    out = Path(out_dir)
    assets = _Assets(out / "assets")
    body = [f"<h1>{_esc(title)}</h1>"]
    if intro:
        body.append(f"<p>{_esc(intro)}</p>")
    if len(sections) > 1:
        items = "".join(f'<li><a href="#section-{i}">{_esc(s.title)}</a></li>' for i, s in enumerate(sections, 1))
        body.append(f"<nav><ol>{items}</ol></nav>")
    for i, section in enumerate(sections, 1):
        if not isinstance(section, Section):
            raise ValueError(f"sections: item {i} is a {type(section).__name__}, expected a Section")
        blocks = "\n".join(_block(block, assets, f"{section.title}: item {j}") for j, block in enumerate(section.blocks, 1))
        body.append(f'<section id="section-{i}">\n<h2>{_esc(section.title)}</h2>\n{blocks}\n</section>')
    page = "\n".join(
        [
            "<!doctype html>",
            '<html lang="en">',
            '<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{_esc(title)}</title><style>{STYLE}</style></head>",
            "<body>",
            *body,
            "</body>",
            "</html>",
            "",
        ]
    )
    out.mkdir(parents=True, exist_ok=True)  # a report without assets has created nothing yet
    index = out / "index.html"
    tmp = out / f".index.html.{os.getpid()}.tmp"
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(index)
    return index


class _Assets:
    """The ``assets/`` folder of a report: numbered files named after their captions."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.count = folder, 0

    def add(self, data: bytes | Path, caption: str, suffix: str) -> str:
        """Copy ``data`` (bytes or a file) into the folder; its URL relative to ``index.html``."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.count += 1
        slug = re.sub(r"[^a-z0-9]+", "-", caption.lower()).strip("-")[:48] or "asset"
        name = f"{self.count:02d}-{slug}{suffix}"
        if isinstance(data, bytes):
            (self.folder / name).write_bytes(data)
        else:
            shutil.copyfile(data, self.folder / name)
        return f"assets/{quote(name)}"


def _block(block: Block, assets: _Assets, where: str) -> str:
    """The HTML of one block; ``where`` names it in errors."""
    if isinstance(block, Text):
        return f"<pre>{_esc(block.body)}</pre>" if block.pre else f"<p>{_esc(block.body)}</p>"
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Image):
        if isinstance(block.source, bytes):
            url = assets.add(block.source, block.caption or "plot", ".png")
        else:
            path = _existing(block.source, IMAGE_SUFFIXES, where)
            url = assets.add(path, block.caption or path.stem, path.suffix.lower())
        return _figure(f'<img src="{_esc(url)}" alt="{_esc(block.caption)}">', block.caption)
    if isinstance(block, Video):
        path = _existing(block.path, tuple(VIDEO_TYPES), where)
        name = block.caption or path.stem
        poster = assets.add(_poster(path, where), f"{name} poster", ".png")
        url = assets.add(path, name, path.suffix.lower())
        kind = VIDEO_TYPES[path.suffix.lower()]
        video = f'<video controls preload="metadata" poster="{_esc(poster)}"><source src="{_esc(url)}" type="{kind}"></video>'
        return _figure(video, block.caption)
    raise ValueError(f"sections: {where} is a {type(block).__name__}, expected Text, Table, Image or Video")


def _poster(path: Path, where: str) -> bytes:
    """The first frame of video ``path`` as PNG bytes."""
    try:
        frame = first_frame(path)
    except (OSError, ValueError) as err:
        raise ValueError(f"sections: {where}: cannot read a frame of {str(path)!r} ({err})") from err
    png = io.BytesIO()
    imsave(png, frame, format="png")
    return png.getvalue()


def _table(table: Table) -> str:
    caption = f"<caption>{_esc(table.caption)}</caption>" if table.caption else ""
    head = "".join(f"<th>{_esc(c)}</th>" for c in table.columns)
    rows = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in table.rows)
    return f'<table class="metrics">{caption}<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def _cell(value: Cell) -> str:
    """A table cell: numbers to 4 significant digits and right-aligned, None and NaN as "—", text escaped."""
    if isinstance(value, bool):
        return f"<td>{'yes' if value else 'no'}</td>"
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '<td class="num">—</td>'
    if isinstance(value, int):
        return f'<td class="num">{value}</td>'
    if isinstance(value, float):
        return f'<td class="num">{value:.4g}</td>'
    return f"<td>{_esc(str(value))}</td>"


def _figure(content: str, caption: str) -> str:
    return f"<figure>{content}" + (f"<figcaption>{_esc(caption)}</figcaption>" if caption else "") + "</figure>"


def _existing(path: str | os.PathLike[str], suffixes: tuple[str, ...], where: str) -> Path:
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise ValueError(f"sections: {where}: expected a {', '.join(suffixes)} file, got {str(path)!r}")
    if not path.is_file():
        raise ValueError(f"sections: {where}: no such file {str(path)!r}")
    return path


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


# -- sections of avworld eval's result files ------------------------------------------------------------------


def prediction_sections(result: Mapping[str, Any], labels: Mapping[str, str] | None = None) -> list[Section]:
    """Sections of a ``prediction.json`` dict: the models, then per metric a table (model × horizon) and a plot of the
    metric against the horizon (one line per model, where a metric has values at two horizons or more), then notes.

    ``labels``: metric → display name (e.g. "PSNR↑"); the metric's own name otherwise.
    """
    models = result.get("models")
    if not isinstance(models, Mapping) or not models:
        raise ValueError("result: a prediction result needs 'models' ({name: {horizons, metrics, ...}})")
    labels = labels or {}
    data = result.get("data", {})
    settings = result.get("settings", {})
    facts = [f"{data.get('name', '?')}, split {data.get('split', '?')}"]
    if "evaluated" in data:
        facts.append(f"{data['evaluated']} of {data.get('windows', '?')} windows")
    if "sampler_steps" in settings:
        facts.append(f"sampler steps {settings['sampler_steps']}")
    overview = Table(
        ["model", "about", "windows", "seconds"],
        [[name, m.get("about", ""), m.get("windows"), m.get("seconds")] for name, m in models.items()],
    )
    sections = [Section("Models", [Text("; ".join(facts)), overview])]
    metrics = list(dict.fromkeys(k for m in models.values() for k in m.get("metrics", {})))
    blocks: list[Block] = []
    for metric in metrics:
        per_model = {name: {int(h): v for h, v in m.get("metrics", {}).get(metric, {}).items()} for name, m in models.items()}
        horizons = sorted({h for per in per_model.values() for h in per})
        label = labels.get(metric, metric)
        rows = [[name, *(per.get(h) for h in horizons)] for name, per in per_model.items()]
        blocks.append(Table(["model", *(f"h={h}" for h in horizons)], rows, caption=label))
        if any(sum(v is not None for v in per.values()) > 1 for per in per_model.values()):
            blocks.append(Image(horizon_plot(per_model, label), caption=f"{label} against the horizon"))
    sections.append(Section("Metrics by horizon", blocks))
    notes = _notes(models)
    if notes:
        sections.append(Section("Notes", [Text(n) for n in notes]))
    return sections


AV_LAG_NOTE = re.compile(r"av_lag_error: (?:over (?P<counted>\d+) of \d+ windows|None, every window)")
"""The per-model notes of :mod:`avworld.eval.prediction` on how many windows ``av_lag_error`` covers."""


def _notes(models: Mapping[str, Any]) -> list[str]:
    """The models' notes, each once: a note every model has as it is, one only some have prefixed by their names.

    The per-model coverage notes of ``av_lag_error`` (one model's "over 5 of 8 windows", another's "None, every
    window ...") become one note that says what the metric averages and over how many windows of each model."""
    by_note: dict[str, list[str]] = {}
    counted: dict[str, int | None] = {}
    for name, m in models.items():
        for note in dict.fromkeys(m.get("notes", [])):
            match = AV_LAG_NOTE.match(note)
            if match:
                counted[name] = int(match["counted"] or 0)
            else:
                by_note.setdefault(note, []).append(name)
    notes = [note if len(names) == len(models) else f"{', '.join(names)}: {note}" for note, names in by_note.items()]
    if counted:
        coverage = []
        for name, m in models.items():
            windows = m.get("windows", "?")
            lagged = counted.get(name)
            if lagged is None:  # no coverage note: every window counted, or the metric was not computed
                has_value = m.get("metrics", {}).get("av_lag_error", {})
                lagged = windows if any(v is not None for v in has_value.values()) else 0
            coverage.append(f"{name} {lagged} of {windows} windows" + ("" if lagged else " (None)"))
        notes.append(
            "av_lag_error is the mean |lag of the predicted rollout − lag of the real one|, in steps, of the cross-correlation "
            "between motion energy and audio energy, over the windows where motion and loudness vary in both rollouts "
            f"(a constant sequence has no lag); counted: {'; '.join(coverage)}."
        )
    return notes


NAVIGATION_COLUMNS = (
    ("success", "success"),
    ("spl", "SPL"),
    ("sna", "SNA"),
    ("dtg", "DTG (m)"),
    ("path_length", "path (m)"),
    ("num_actions", "actions"),
    ("optimal_actions", "optimal actions"),
)


def navigation_sections(result: Mapping[str, Any], agent: str = "agent") -> list[Section]:
    """Sections of a ``navigation.json`` dict: the summary (SR, SPL, SNA, DTG), one row per episode, and its config."""
    summary = result.get("summary")
    if not isinstance(summary, Mapping):
        raise ValueError("result: a navigation result needs 'summary' ({SR, SPL, SNA, DTG, episodes})")
    names = ("SR", "SPL", "SNA", "DTG")
    rows = [[agent, *(summary.get(k) for k in names), int(summary.get("episodes", 0))]]
    sections = [Section("Navigation", [Table(["agent", *names[:3], "DTG (m)", "episodes"], rows)])]
    episodes = result.get("episodes", [])
    if episodes:
        columns = ["episode", "scene seed", *(label for _, label in NAVIGATION_COLUMNS)]
        rows = [[i, e.get("scene_seed"), *(e.get(k) for k, _ in NAVIGATION_COLUMNS)] for i, e in enumerate(episodes)]
        sections.append(Section("Episodes", [Table(columns, rows)]))
    if "config" in result:
        sections.append(Section("Config", [Text(yaml.safe_dump(result["config"], sort_keys=False), pre=True)]))
    return sections


def tokenizer_sections(result: Mapping[str, Any]) -> list[Section]:
    """Sections of a ``tokenizer.json`` dict: its scores as a table."""
    scores = result.get("scores")
    if not isinstance(scores, Mapping):
        raise ValueError("result: a tokenizer result needs 'scores' ({metric: value})")
    about = f"{result.get('kind', '?')} checkpoint {result.get('checkpoint', '?')}, split {result.get('split', '?')}"
    return [Section("Tokenizer", [Text(about), Table(["metric", "value"], [[k, v] for k, v in scores.items()])])]
