"""Are a chart's marks visible? Parses Vega's SVG (what `charts.save_chart` and `charts.to_svg` write)
and measures every mark item's extent, so a chart whose axes and legend render but whose marks have zero
size (bars on a log axis that start at 0) fails a test instead of passing for having <path> elements.

Vega draws each layer's marks as `<g class="mark-TYPE role-mark …">` holding one element per datum: a
<path> (bars, areas, lines, symbols), a <line> (rules) or <text>. A filled mark (rect, area, arc) needs a
width and a height; a stroked one (line, rule, trail) or a symbol needs a length in either direction.
"""
import re
import xml.etree.ElementTree as ET

FILLED = {"rect", "area", "arc", "image"}
SKIPPED = {"text", "group"}          # labels, and containers whose children are checked on their own
TOKEN = re.compile(r"[A-Za-z]|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
ARITY = {"M": 2, "L": 2, "T": 2, "H": 1, "V": 1, "C": 6, "S": 4, "Q": 4, "A": 7, "Z": 0}


def path_extent(d: str) -> tuple[float, float]:
    """(width, height) of an SVG path's bounding box, taking control points and arc radii as bounds (an
    over-estimate for curves, which is all a zero-size check needs)."""
    xs, ys = [], []
    x = y = x0 = y0 = 0.0
    tokens = TOKEN.findall(d)
    i, cmd = 0, None
    while i < len(tokens):
        if tokens[i].isalpha():
            cmd = tokens[i]
            i += 1
            if cmd in "Zz":
                x, y = x0, y0
                continue
        n = ARITY[cmd.upper()]
        args = [float(t) for t in tokens[i:i + n]]
        i += n
        rel = cmd.islower()
        up = cmd.upper()
        if up == "H":
            x = args[0] + (x if rel else 0)
        elif up == "V":
            y = args[0] + (y if rel else 0)
        elif up == "A":
            rx, ry = abs(args[0]), abs(args[1])
            xs += [x - rx, x + rx]
            ys += [y - ry, y + ry]
            x, y = args[5] + (x if rel else 0), args[6] + (y if rel else 0)
            xs += [x - rx, x + rx]
            ys += [y - ry, y + ry]
        else:
            for k in range(0, n - 2, 2):    # control points of curves
                xs.append(args[k] + (x if rel else 0))
                ys.append(args[k + 1] + (y if rel else 0))
            x, y = args[n - 2] + (x if rel else 0), args[n - 1] + (y if rel else 0)
        if up == "M":
            x0, y0 = x, y
            cmd = "l" if rel else "L"      # further pairs after a moveto are linetos
        xs.append(x)
        ys.append(y)
    if not xs:
        return 0.0, 0.0
    return max(xs) - min(xs), max(ys) - min(ys)


def item_extent(el) -> tuple[float, float]:
    tag = el.tag.split("}")[-1]
    if tag == "path":
        return path_extent(el.get("d", ""))
    if tag == "line":
        num = lambda name: float(el.get(name, 0))
        return abs(num("x2") - num("x1")), abs(num("y2") - num("y1"))
    if tag in ("rect", "image"):
        return float(el.get("width", 0)), float(el.get("height", 0))
    return 0.0, 0.0


def mark_groups(svg: str) -> list[tuple[str, list[tuple[float, float]]]]:
    """Every mark layer in the SVG as (mark type, [(width, height) of each item]). Vega draws a layer's
    series (one line per colour) as separate groups sharing the layer's name: they count as one layer."""
    root = ET.fromstring(svg)
    layers = {}
    for g in root.iter():
        classes = (g.get("class") or "").split()
        if "role-mark" not in classes:
            continue
        kind = next((c[5:] for c in classes if c.startswith("mark-")), "?")
        if kind in SKIPPED:
            continue
        name = next((c for c in classes if c.endswith("_marks")), f"#{len(layers)}")   # unnamed: its own layer
        items = [el for el in g if el.tag.split("}")[-1] in ("path", "line", "rect", "image")]
        layers.setdefault((kind, name), []).extend(item_extent(el) for el in items)
    return [(kind, extents) for (kind, _), extents in layers.items()]


def visible(kind: str, extent: tuple[float, float]) -> bool:
    w, h = extent
    return (w > 0 and h > 0) if kind in FILLED else max(w, h) > 0


def invisible_marks(svg: str) -> list[str]:
    """Problems with a chart's marks, empty when every non-empty mark layer draws at least one item of
    non-zero size and the chart draws something: e.g. ['mark-rect: 0 of 24 items have a non-zero size'].
    A layer that draws some series but not others (a one-point line beside longer ones) passes."""
    return layer_problems([(kind, len(extents), sum(visible(kind, e) for e in extents))
                           for kind, extents in mark_groups(svg)])


def layer_problems(layers) -> list[str]:
    """The same verdict from (mark type, items, items of non-zero size) per mark layer — what the browser
    tests measure with getBBox() in the rendered page."""
    problems = [f"mark-{kind}: 0 of {items} items have a non-zero size" for kind, items, shown in layers
                if items and not shown]
    if not any(shown for _, _, shown in layers):
        problems.append(f"no visible mark at all ({len(layers)} mark layers)")
    return problems
