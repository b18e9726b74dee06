"""What a reader of a chart sees, measured in Vega's SVG (what `charts.save_chart` and `charts.to_svg` write):

- `invisible_marks`: every mark layer draws something — an item of non-zero size with a stroke or fill to
  see (bars of zero height on a log axis, or a line whose colour encoding names a missing field, fail);
- `legend_problems`: every legend entry has a visible mark drawn in its style (colour, dash, shape);
- `edge_problems`: no mark lies on or beyond its plot's edge (a point centred on the frame is half cut off);
- `untitled_axes`: every axis has a title;
- `chart_problems`: all four.

Vega draws each layer's marks as `<g class="mark-TYPE role-mark …">` holding one element per datum: a
<path> (bars, areas, lines, symbols), a <line> (rules) or <text>. A filled mark (rect, area, arc) needs a
width, a height and a fill; a stroked one (line, rule, trail) a length and a stroke; a symbol either paint.
Positions are `translate(x,y)` transforms on groups and items; each plot is a group whose first child is
its frame (`path.background`).
"""
import re
import xml.etree.ElementTree as ET

FILLED = {"rect", "area", "arc", "image"}
STROKED = {"line", "rule", "trail"}
SKIPPED = {"text", "group"}          # labels, and containers whose children are checked on their own
TOKEN = re.compile(r"[A-Za-z]|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
ARITY = {"M": 2, "L": 2, "T": 2, "H": 1, "V": 1, "C": 6, "S": 4, "Q": 4, "A": 7, "Z": 0}
TRANSLATE = re.compile(r"translate\(\s*([-\d.e+]+)[ ,]+([-\d.e+]+)\s*\)")
FRAME = re.compile(r"h([\d.]+)v([\d.]+)")
NO_PAINT = (None, "", "none", "transparent")
EDGE_TOLERANCE = 0.5                 # px: Vega offsets frames by half a pixel


def path_points(d: str) -> list[tuple[float, float]]:
    """The vertices of an SVG path (control points and arc radii as bounds: an over-estimate for curves)."""
    points = []
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
            points += [(x - rx, y - ry), (x + rx, y + ry)]
            x, y = args[5] + (x if rel else 0), args[6] + (y if rel else 0)
            points += [(x - rx, y - ry), (x + rx, y + ry)]
        else:
            for k in range(0, n - 2, 2):    # control points of curves
                points.append((args[k] + (x if rel else 0), args[k + 1] + (y if rel else 0)))
            x, y = args[n - 2] + (x if rel else 0), args[n - 1] + (y if rel else 0)
        if up == "M":
            x0, y0 = x, y
            cmd = "l" if rel else "L"      # further pairs after a moveto are linetos
        points.append((x, y))
    return points


def _box(points):
    if not points:
        return None
    xs, ys = zip(*points)
    return min(xs), min(ys), max(xs), max(ys)


def _local_box(el):
    tag = el.tag.split("}")[-1]
    num = lambda name: float(el.get(name, 0))   # noqa: E731
    if tag == "path":
        return _box(path_points(el.get("d", "")))
    if tag == "line":
        x1, y1, x2, y2 = num("x1"), num("y1"), num("x2"), num("y2")
        return min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)
    if tag in ("rect", "image"):
        return num("x"), num("y"), num("x") + num("width"), num("y") + num("height")
    return None


def _translate(el):
    m = TRANSLATE.search(el.get("transform") or "")
    return (float(m.group(1)), float(m.group(2))) if m else (0.0, 0.0)


def _classes(el):
    return (el.get("class") or "").split()


def _shape(d: str) -> str:
    """A symbol's shape independent of its size: its commands and its vertices scaled to a unit box."""
    box = _box(path_points(d))
    if box is None:
        return ""
    w, h = (box[2] - box[0]) or 1.0, (box[3] - box[1]) or 1.0
    points = sorted({(round((px - box[0]) / w, 1), round((py - box[1]) / h, 1)) for px, py in path_points(d)})
    return "".join(re.findall(r"[A-Za-z]", d)).upper() + str(points)


def _style(el) -> dict:
    dash = el.get("stroke-dasharray")
    return dict(stroke=el.get("stroke"), fill=el.get("fill"),
                dash="solid" if dash in (None, "", "1,0", "none") else dash.replace(" ", ""),
                shape=_shape(el.get("d", "")) if el.tag.split("}")[-1] == "path" else "")


def _parse(svg: str):
    """Every mark item as dict(kind, layer, box (absolute), frame (its plot's box, or None), style,
    opacity), every legend as [(label, style)], and every axis as its title text."""
    root = ET.fromstring(svg)
    items, legends, axes = [], [], []

    def visit(el, dx, dy, frame):
        classes = _classes(el)
        if "role-axis" in classes:
            if not any("role-axis-label" in _classes(g) for g in el.iter()):
                return      # a grid: Vega draws an axis's grid lines as an axis of their own
            axes.append(" ".join(t.text or "" for g in el.iter() if "role-axis-title" in _classes(g)
                                 for t in g.iter() if t.tag.split("}")[-1] == "text").strip())
            return
        if "role-legend" in classes:
            # a continuous scale's legend shows sample values no mark need have: only discrete ones are checked
            continuous = "with values from" in (el.get("aria-label") or "") or any(
                {"role-legend-gradient", "role-legend-band"} & set(_classes(g)) for g in el.iter())
            if not continuous:
                symbols = [p for g in el.iter() if "role-legend-symbol" in _classes(g) for p in g]
                labels = [" ".join(t.itertext()) for g in el.iter() if "role-legend-label" in _classes(g) for t in g]
                channels = re.search(r" for (.*?) with ", el.get("aria-label") or "")   # "for stroke color and …"
                legends.append((channels.group(1) if channels else "color shape strokeDash",
                                list(zip(labels, [_style(p) for p in symbols]))))
            return
        if "role-title" in classes:
            return
        tx, ty = _translate(el)
        dx, dy = dx + tx, dy + ty
        children = list(el)
        if el.tag.split("}")[-1] == "g" and children and "background" in _classes(children[0]):
            m = FRAME.search(children[0].get("d", ""))
            if m and float(m.group(1)) > 0 and float(m.group(2)) > 0:
                frame = (dx, dy, dx + float(m.group(1)), dy + float(m.group(2)))
        if "role-mark" in classes:
            kind = next((c[5:] for c in classes if c.startswith("mark-")), "?")
            if kind in SKIPPED:
                return
            layer = next((c for c in classes if c.endswith("_marks")), f"#{id(el)}")   # unnamed: its own layer
            for item in children:
                box = _local_box(item)
                if box is None:
                    continue
                ix, iy = _translate(item)
                box = (box[0] + dx + ix, box[1] + dy + iy, box[2] + dx + ix, box[3] + dy + iy)
                opacity = min(float(item.get(a, 1)) for a in ("opacity", "stroke-opacity" if kind in STROKED
                                                                 else "fill-opacity"))
                items.append(dict(kind=kind, layer=(kind, layer), box=box, frame=frame, style=_style(item),
                                  opacity=opacity, label=item.get("aria-label", "")))
            return
        for child in children:
            visit(child, dx, dy, frame)

    visit(root, 0.0, 0.0, None)
    return items, legends, axes


def visible(item) -> bool:
    """An item one can see: non-zero size, some paint, not transparent."""
    x0, y0, x1, y1 = item["box"]
    w, h = x1 - x0, y1 - y0
    kind, style = item["kind"], item["style"]
    if item["opacity"] <= 0:
        return False
    if kind in FILLED:
        return w > 0 and h > 0 and style["fill"] not in NO_PAINT
    if kind in STROKED:
        return max(w, h) > 0 and style["stroke"] not in NO_PAINT
    return max(w, h) > 0 and (style["stroke"] not in NO_PAINT or style["fill"] not in NO_PAINT)


def invisible_marks(svg: str) -> list[str]:
    """Problems with a chart's marks, empty when every non-empty mark layer draws at least one visible
    item and the chart draws something: e.g. ['mark-rect: 0 of 24 items are visible'].
    A layer that draws some series but not others (a one-point line beside longer ones) passes."""
    layers = {}
    for item in _parse(svg)[0]:
        layers.setdefault(item["layer"], []).append(visible(item))
    return layer_problems([(kind, len(shown), sum(shown)) for (kind, _), shown in layers.items()])


def layer_problems(layers) -> list[str]:
    """The same verdict from (mark type, items, visible items) per mark layer — what the browser tests
    measure with getBBox() in the rendered page."""
    problems = [f"mark-{kind}: 0 of {items} items are visible" for kind, items, shown in layers
                if items and not shown]
    if not any(shown for _, _, shown in layers):
        problems.append(f"no visible mark at all ({len(layers)} mark layers)")
    return problems


def _matches(item, entry: dict, features) -> bool:
    paints = {item["style"]["stroke"], item["style"]["fill"]} - set(NO_PAINT)
    colour = {entry["stroke"], entry["fill"]} - set(NO_PAINT)
    return all(bool(colour & paints) if f == "colour" else item["style"][f] == entry[f] for f in features)


CHANNELS = {"color": "colour", "shape": "shape", "strokeDash": "dash"}


def _describe(style, feature) -> str:
    if feature == "colour":
        return style["stroke"] if style["stroke"] not in NO_PAINT else style["fill"]
    return style[feature]


def legend_problems(svg: str) -> list[str]:
    """Legend entries with no visible mark drawn in their style: the style the legend encodes (its colour,
    dash or shape, as Vega's label for it says), e.g. ['legend entry "D* (U-shaped)": no visible mark in
    its style (shape …)']."""
    items, legends, _ = _parse(svg)
    shown = [i for i in items if visible(i)]
    problems = []
    for channels, entries in legends:
        features = sorted({f for name, f in CHANNELS.items() if name in channels})
        for label, style in entries:
            if label in ("undefined", "null", "NaN"):          # the encoded field is missing from the data
                problems.append(f"legend entry {label!r}: the legend's field has no value")
            elif not any(_matches(i, style, features) for i in shown):
                what = ", ".join(f"{f} {_describe(style, f)}" for f in features)
                problems.append(f"legend entry {label!r}: no visible mark in its style ({what})")
    return problems


def edge_problems(svg: str) -> list[str]:
    """Marks on or beyond their plot's edge: a point whose centre is on the frame shows half of itself, a
    line past it is cut. Lines and rules may run along an edge (a bar starts at the axis)."""
    problems = []
    for item in _parse(svg)[0]:
        if item["frame"] is None or not visible(item):
            continue
        (x0, y0, x1, y1), (f0, g0, f1, g1) = item["box"], item["frame"]
        t = EDGE_TOLERANCE
        flat_x, flat_y = x1 - x0 <= t, y1 - y0 <= t      # a rule along an edge hides under the axis
        side = [s for s, out in (("left", x0 < f0 - t or (flat_x and x0 <= f0 + t)),
                                 ("top", y0 < g0 - t or (flat_y and y0 <= g0 + t)),
                                 ("right", x1 > f1 + t or (flat_x and x1 >= f1 - t)),
                                 ("bottom", y1 > g1 + t or (flat_y and y1 >= g1 - t))) if out]
        if side:
            problems.append(f"mark-{item['kind']} {item['label'][:80]!r} on or beyond the {'/'.join(side)} edge")
    return problems


def untitled_axes(svg: str) -> list[str]:
    """Axes (with labels: not grids) without a title: e.g. ['axis 2 of 2 has no title']."""
    axes = _parse(svg)[2]
    return [f"axis {i + 1} of {len(axes)} has no title" for i, title in enumerate(axes) if not title]


def chart_problems(svg: str) -> list[str]:
    """Everything above: invisible marks, legend entries without a mark, marks on the edge, untitled axes."""
    return invisible_marks(svg) + legend_problems(svg) + edge_problems(svg) + untitled_axes(svg)
