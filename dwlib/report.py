"""A report to hand out: the executed notebooks under outputs/ as static, self-contained HTML pages and an
index page listing each notebook with its preset, verdicts, wall time and charts.

    python -m dwlib.report                       # outputs/*/manifest.json → outputs/report/index.html
    python -m dwlib.report --outputs DIR --to DIR

Self-contained: charts are inline SVG (the notebooks' altair `svg` renderer; the index embeds the saved
SVGs), math is MathML (latex2mathml; browsers draw it natively), styles are inline, and the pages load
no script from the network (nbconvert's lab template without its require.js, MathJax, mermaid and
widget-manager tags). Interactive widgets need a kernel: a page says so where each one was — the
notebooks show their key figures in plain cells too, and those are on the page.
"""
from __future__ import annotations

import argparse
import base64
import html
import json
import os
import re
import sys
import time
from pathlib import Path

from . import presets

TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{% block data_svg scoped -%}
<div class="jp-RenderedSVG jp-OutputArea-output {{ extra_class }}" data-mime-type="image/svg+xml">
<img alt="{{ output.metadata.get('alt', 'a chart') | escape_html }}"
     src="data:image/svg+xml;base64,{{ output.data['image/svg+xml'] | text_base64 | escape_html }}">
</div>
{%- endblock data_svg %}
"""
WIDGET = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = ("<p class='dwlib-widget'><i>An interactive widget was here (sliders, a button): open the "
               "notebook in JupyterLab to use it.</i></p>")
TITLE = re.compile(r"aria-label=\"Title text '(.*?)'\"")   # Vega's titles, in its SVG
MATH = re.compile(r"\$\$(.+?)\$\$|(?<![\\$])\$([^$\n]+?)\$", re.S)
STYLE = """body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
section { border-top: 1px solid #ddd; padding: 0.5em 0 1em; }
.meta { color: #555; } .problem { color: #a00; } .thumbs img { width: 320px; margin: 4px; border: 1px solid #eee; }"""


def executed_notebooks(outputs: Path) -> list[dict]:
    """The manifests (`notebooks.Session.finish`) of the notebooks executed under `outputs`, one folder
    each, in notebook order; each gains `folder`, `path` (its executed .ipynb) and `problem`: None, or
    why the folder cannot be reported (naming the file) — then the entry holds only its notebook's name,
    never a manifest's verdicts. A folder with an executed notebook but no manifest is one whose last
    run failed or was stopped (the runner removes the old manifest as a run starts)."""
    found = []
    folders = {p.parent for pattern in ("*/manifest.json", "*/*.ipynb") for p in Path(outputs).glob(pattern)}
    for folder in sorted(folders):
        entry, problem = _read_manifest(folder)
        path = folder / f"{entry['notebook']}.ipynb"
        if problem is None:
            try:   # a truncated write is not JSON
                json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                entry, problem = dict(notebook=entry["notebook"]), f"{path} cannot be read: {e}"
        found.append(dict(entry, folder=folder, path=path, problem=problem))
    return found


def _read_manifest(folder: Path) -> tuple[dict, str | None]:
    """(the manifest, None), or ({notebook: its name}, what is wrong with the manifest)."""
    manifest, executed = folder / "manifest.json", sorted(folder.glob("*.ipynb"))
    name = dict(notebook=executed[0].stem if executed else folder.name)
    try:
        entry = json.loads(manifest.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return name, (f"no {manifest}: the last run failed or was stopped before its end (its page shows how "
                      "far it got)")
    except (OSError, ValueError) as e:   # unreadable, or not JSON (a truncated write)
        return name, f"{manifest} cannot be read: {e}"
    missing = [k for k in ("notebook", "preset", "wall_seconds") if not isinstance(entry, dict) or k not in entry]
    if missing:
        return name, f"{manifest} lacks {', '.join(missing)}"
    return entry, None


def mathml(text: str) -> str:
    """Markdown with its $$display$$ and $inline$ TeX replaced by MathML."""
    from latex2mathml.converter import convert

    def replace(match):
        display, inline = match.groups()
        return convert(display if display is not None else inline,
                       display="block" if display is not None else "inline")
    return MATH.sub(replace, text)


def notebook_html(path: Path) -> str:
    """One executed notebook as a standalone HTML page (see the module docstring)."""
    import jinja2
    import nbformat
    from nbconvert import HTMLExporter
    nb = nbformat.read(str(path), as_version=4)
    nb.metadata.pop("widgets", None)          # widget state: only a widget manager script could use it
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = mathml(cell.source)
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET in data:
                output["data"] = {"text/html": WIDGET_NOTE}
            elif "text/markdown" in data:
                data["text/markdown"] = mathml(data["text/markdown"])
            if "image/svg+xml" in data:            # the chart's title (drawn last) as the image's alt text
                titles = TITLE.findall(data["image/svg+xml"])
                output.setdefault("metadata", {})["alt"] = html.unescape(titles[-1]) if titles else "a chart"
    exporter = HTMLExporter(extra_loaders=[jinja2.DictLoader({"dwlib_report.html.j2": TEMPLATE})],
                            template_file="dwlib_report.html.j2")
    return exporter.from_notebook_node(nb)[0]


def index_html(entries: list[dict], title: str = "dwlib report") -> str:
    """The index page: per notebook, a link to its page, its preset, wall time, verdicts and charts."""
    from nbconvert.filters.markdown import markdown2html
    sections = []
    for e in entries:
        if e.get("problem"):   # never a manifest's verdicts beside a notebook that did not produce them
            name = html.escape(e["notebook"])
            title = f"<a href='{name}.html'>{name}</a>" if e.get("page") else name
            sections.append(f"<section class='marked'><h2>{title}</h2><p class='problem'><b>Not reported:</b> "
                            f"{html.escape(e['problem'])}</p></section>")
            continue
        verdicts = "".join(f"<li>{markdown2html(mathml(v))}</li>" for v in e.get("verdicts", []))
        thumbs = "".join(f"<img alt='{html.escape(c)}' title='{html.escape(c)}' src='data:image/svg+xml;base64,"
                         f"{base64.b64encode((e['folder'] / f'{c}.svg').read_bytes()).decode()}'>"
                         for c in e.get("charts", []) if (e["folder"] / f"{c}.svg").exists())
        sections.append(
            f"<section><h2><a href='{html.escape(e['notebook'])}.html'>{html.escape(e['notebook'])}</a></h2>"
            f"<p class='meta'>preset <b>{html.escape(str(e['preset']))}</b> · wall time "
            f"{_duration(e['wall_seconds'])} · {len(e.get('charts', []))} charts</p>"
            + (f"<ul class='verdicts'>{verdicts}</ul>" if verdicts
               else "<p class='meta'><i>no verdict recorded</i></p>")
            + f"<div class='thumbs'>{thumbs}</div></section>")
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<p class='meta'>{len(entries)} notebooks, built {time.strftime('%Y-%m-%d %H:%M')}. Each page is the "
            f"executed notebook; every number in its prose comes from that run.</p>{''.join(sections)}</body></html>")


def build(outputs: Path, target: Path) -> Path:
    """Write <target>/index.html and one <name>.html per executed notebook under `outputs`; return the
    index's path. A notebook that cannot be reported is marked on the index (its `problem`), and the
    others are reported. Raises ValueError when `outputs` holds no executed notebook, or when the report
    cannot be written (each file is written whole or not at all: no truncated page is left)."""
    entries = executed_notebooks(outputs)
    if not entries:
        raise ValueError(f"no executed notebooks under {outputs} (each needs <name>/manifest.json and "
                         f"<name>/<name>.ipynb): run `make smoke` or `make notebooks` first")
    try:
        target.mkdir(parents=True, exist_ok=True)
        for e in entries:
            if e["path"].exists():
                try:
                    page = notebook_html(e["path"])
                except Exception as err:   # nbformat or nbconvert refusing one notebook: mark it, report the rest
                    e["problem"] = e["problem"] or f"{e['path']} cannot be converted: {type(err).__name__}: {err}"
                    continue
                _write(target / f"{e['notebook']}.html", page)
                e["page"] = True
        index = target / "index.html"
        _write(index, index_html(entries))
    except OSError as e:   # a read-only or full disk, a file in the way
        raise ValueError(f"cannot write the report to {target}: {e.strerror or e}") from None
    return index


def _write(path: Path, text: str) -> None:
    """Write a whole file or nothing: a temporary file beside it, renamed over it once complete."""
    partial = path.with_name(path.name + ".partial")
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def main(argv=None) -> int:
    outputs = presets.repo_root() / "outputs"
    parser = argparse.ArgumentParser(prog="python -m dwlib.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--outputs", type=Path, default=outputs, help="folder of executed notebooks (default outputs/)")
    parser.add_argument("--to", type=Path, default=None, help="report folder (default <outputs>/report)")
    args = parser.parse_args(argv)
    try:
        index = build(args.outputs, args.to or args.outputs / "report")
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    entries = executed_notebooks(args.outputs)
    marked = [e for e in entries if e["problem"]]
    for e in marked:
        print(f"warning: {e['notebook']} is marked, not reported: {e['problem']}", file=sys.stderr)
    print(f"report: {index} ({len(entries) - len(marked)} reported" + (f", {len(marked)} marked)" if marked else ")"))
    return 3 if marked else 0


if __name__ == "__main__":
    sys.exit(main())
