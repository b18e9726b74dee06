"""Real-browser check of the primer: JupyterLab on 127.0.0.1, the primer opened in headless Chromium
(Debian's `chromium`, driven by Playwright's Python API; no browser download), all cells run, the depth
slider moved, and the calculator's parameter count and an altair chart checked in the rendered page.

Every chart in the page is measured with getBBox(): each mark layer must draw something of non-zero
size (a chart whose axes render but whose bars have zero height fails). Opening the notebook must not
mark it modified.

A second test builds the hand-out report (`dwlib.report`) from an executed primer and opens it from
file:// with every network request refused: its pages must load and show visible charts.

Skips when chromium or playwright is absent, except under CI=true, where .ci/run installs both and
their absence is a failure. Screenshots land in outputs/browser_primer_before.png (after run-all),
outputs/browser_primer_race.png, outputs/browser_primer.png (after moving the slider) and
outputs/browser_report_index.png."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from chart_marks import layer_problems

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = "notebooks/01_primer.py"          # relative to the lab's root dir (the repo)
LAB_CONFIG_DIR = REPO / ".jupyter"           # labconfig that opens .py files as notebooks (`make lab`)
OUTPUTS = REPO / "outputs"
IN_CI = os.environ.get("CI", "").lower() in ("true", "1", "yes")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run"]
KERNEL_READY = """() => {
    const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    const session = panel && panel.sessionContext;
    const kernel = session && session.session && session.session.kernel;
    return !!(kernel && panel.context.isReady && session.isReady && kernel.status === 'idle'
              && kernel.connectionStatus === 'connected');
}"""
# Every Vega chart in the page (inline <svg class="marks">, or an <img> of one), drawn into a hidden host and
# measured with getBBox(): per chart, its mark layers as [type, items, items with a non-zero box]. Filled
# marks (rect, area, arc) need width and height, lines, rules and symbols a length (tests/chart_marks.py).
CHART_MARKS = """(root) => {
    const sources = [...root.querySelectorAll('svg.marks')].map(svg => svg.outerHTML);
    for (const img of root.querySelectorAll('img[src^="data:image/svg+xml"]')) {
        const [head, body] = img.src.split(',', 2);
        sources.push(head.endsWith(';base64')
            ? new TextDecoder().decode(Uint8Array.from(atob(body), c => c.charCodeAt(0)))
            : decodeURIComponent(body));
    }
    const host = document.createElement('div');
    host.style.cssText = 'position:absolute; left:-20000px; top:0';
    document.body.appendChild(host);
    const charts = sources.map(source => {
        host.innerHTML = source;
        const layers = {};     // a layer's series are separate groups sharing its name: one layer
        [...host.querySelectorAll('g.role-mark')].forEach((g, i) => {
            const cls = g.getAttribute('class') || '';
            const kind = (cls.match(/mark-(\\w+)/) || [, '?'])[1];
            if (kind === 'text' || kind === 'group') return;
            const key = kind + ' ' + ((cls.match(/\\S+_marks/) || ['#' + i])[0]);
            const items = [...g.children].filter(el => ['path', 'line', 'rect', 'image'].includes(el.tagName));
            const filled = ['rect', 'area', 'arc', 'image'].includes(kind);
            const shown = items.filter(el => {
                const b = el.getBBox();
                return filled ? b.width > 0 && b.height > 0 : Math.max(b.width, b.height) > 0;
            }).length;
            const layer = layers[key] || (layers[key] = [kind, 0, 0]);
            layer[1] += items.length;
            layer[2] += shown;
        });
        return Object.values(layers);
    });
    host.remove();
    return charts;
}"""
# "non-embedding parameters: 12,345,678": digits with thousands separators (comma or thin spaces)
NUMBER = re.compile(r"\d{1,3}(?:[,\u2009\u202f\u00a0]\d{3})+|\d+")


def _missing(reason):
    # CI installs chromium and playwright (.ci/run, requirements.txt): there a missing one is a failure
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the browser check must run in CI)")
    pytest.skip(reason)


def find_chromium():
    """Path of a Chromium binary: $DWLIB_CHROMIUM, Debian's real binary (not the /usr/bin shell
    wrapper), or chromium on PATH; None when there is none."""
    candidates = [os.environ.get("DWLIB_CHROMIUM"), "/usr/lib/chromium/chromium", shutil.which("chromium"),
                  shutil.which("chromium-browser")]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


def parameter_count(text):
    """The number nearest to the words "non-embedding parameters" in the calculator's text."""
    phrase = text.find("non-embedding parameters")
    if phrase < 0:
        raise AssertionError(f"calculator text has no 'non-embedding parameters': {text!r}")
    phrase_end = phrase + len("non-embedding parameters")
    numbers = list(NUMBER.finditer(text))
    if not numbers:
        raise AssertionError(f"no number in calculator text {text!r}")
    nearest = min(numbers, key=lambda m: max(phrase - m.end(), m.start() - phrase_end, 0))
    return int(re.sub(r"\D", "", nearest.group()))


def settled_text(locator, quiet=0.6, limit=20.0):
    """The locator's text once it has stopped changing for `quiet` seconds (each key press sends one
    update to the kernel and back)."""
    text, since, deadline = locator.text_content(), time.monotonic(), time.monotonic() + limit
    while time.monotonic() - since < quiet and time.monotonic() < deadline:
        time.sleep(0.1)
        now = locator.text_content()
        if now != text:
            text, since = now, time.monotonic()
    return text


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_tail(path, chars=3000):
    text = Path(path).read_text(errors="replace") if Path(path).exists() else ""
    return text[-chars:]


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server rooted at the repo on 127.0.0.1 with no token, its settings, workspaces,
    runtime and IPython dirs private to this test; yields its base URL and always stops it."""
    if not (LAB_CONFIG_DIR / "labconfig").is_dir():
        pytest.fail(f"{LAB_CONFIG_DIR}/labconfig is missing: without it lab opens .py files as text")
    port = free_port()
    env = dict(os.environ)
    env.update(JUPYTER_CONFIG_DIR=str(LAB_CONFIG_DIR), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTER_DATA_DIR=str(tmp_path / "data"), IPYTHONDIR=str(tmp_path / "ipython"),
               # the primer's kernel shares 2 cores with lab and chromium: one torch thread
               DWLIB_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYDEVD_DISABLE_FILE_VALIDATION="1")
    # no autosave: running cells marks the notebook dirty, and lab would rewrite the primer's source
    docmanager = tmp_path / "settings" / "@jupyterlab" / "docmanager-extension"
    docmanager.mkdir(parents=True)
    (docmanager / "plugin.jupyterlab-settings").write_text(json.dumps({"autosave": False}))
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           "--ServerApp.port_retries=0", "--IdentityProvider.token=", "--ServerApp.password=",
           "--ServerApp.disable_check_xsrf=True",   # lets stop_lab shut kernels down over plain HTTP
           "--LabApp.expose_app_in_browser=True", f"--ServerApp.root_dir={REPO}",
           f"--LabApp.user_settings_dir={tmp_path / 'settings'}",
           f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log_path = tmp_path / "lab.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited with code {proc.returncode}:\n{log_tail(log_path)}")
            try:
                urllib.request.urlopen(f"{base}/api/status", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"jupyter lab did not answer on {base} within 60 s:\n{log_tail(log_path)}")
                time.sleep(0.3)
        yield {"url": base, "log": log_path}
    finally:
        stop_lab(proc, base)


def stop_lab(proc, base):
    # shut the kernels down through the API first: they run in their own sessions, so a signal to
    # lab alone could leave one behind if lab dies before cleaning up
    try:
        kernels = json.load(urllib.request.urlopen(f"{base}/api/kernels", timeout=3))
        for kernel in kernels:
            req = urllib.request.Request(f"{base}/api/kernels/{kernel['id']}", method="DELETE")
            urllib.request.urlopen(req, timeout=10).read()
    except OSError:
        pass
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def chromium():
    """Chromium's path, once both it and playwright are known present (checked before lab starts)."""
    path = find_chromium()
    if path is None:
        _missing("chromium is not installed (apt-get install chromium; .ci/run does it in CI)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("playwright is not installed (pip install -r requirements.txt)")
    return path


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_primer_in_real_browser(chromium, lab):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    OUTPUTS.mkdir(exist_ok=True)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1100})

            def wait(what, seconds, fn, *args, **kwargs):
                """Run one Playwright wait; on timeout fail naming the step, with a screenshot and lab's log."""
                try:
                    return fn(*args, timeout=seconds * 1000, **kwargs)
                except PlaywrightTimeout:
                    shot = OUTPUTS / "browser_primer_failure.png"
                    page.screenshot(path=str(shot))
                    pytest.fail(f"timed out after {seconds} s waiting for {what} (screenshot {shot});"
                                f" lab log tail:\n{log_tail(lab['log'])}")

            wait("the primer to load", 60, page.goto, f"{lab['url']}/lab/tree/{NOTEBOOK}?reset")
            wait("a notebook (is .py opening as text? check .jupyter/labconfig)", 60,
                 page.wait_for_selector, ".jp-NotebookPanel .jp-Notebook")
            # the idle indicator can show before the panel's kernel connection is up, and a run-all
            # sent then is dropped: wait for the session itself
            wait("the kernel to be connected and idle", 90, page.wait_for_function, KERNEL_READY)
            page.wait_for_timeout(500)
            # opening is not editing: with the kernel's language_info missing from the .py header, lab marked
            # the primer modified here, and closing it asked to save (.jupyter/jupyter_server_config.py)
            assert not page.evaluate("() => window.jupyterapp.shell.currentWidget.context.model.dirty"), \
                "the primer is marked modified right after opening"
            # not awaited: the promise resolves only when every cell has run
            page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")

            depth_slider = page.locator(".widget-slider").filter(
                has=page.locator(".widget-label", has_text=re.compile(r"^\s*depth\s*$")))
            calc = page.locator(".dwlib-calc")
            wait("the depth slider", 120, depth_slider.first.wait_for)
            wait("the calculator (.dwlib-calc) to show a count", 60, page.wait_for_function,
                 "() => [...document.querySelectorAll('.dwlib-calc')]"
                 ".some(e => e.textContent.includes('non-embedding parameters'))")
            assert depth_slider.count() == 1, f"{depth_slider.count()} sliders labelled 'depth', expected 1"
            assert calc.count() == 1, f"{calc.count()} elements with class dwlib-calc, expected 1"

            # charts: let run-all finish (queued and running cells show "[*]"; the slider's cell has run,
            # so the rest is queued by now), then look for an SVG output with marks in it
            wait("run-all to finish", 150, page.wait_for_function,
                 "() => ![...document.querySelectorAll('.jp-InputArea-prompt')]"
                 ".some(e => e.textContent.includes('*'))")
            errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
                                  ".jp-RenderedText:has-text('Traceback'), .jp-RenderedText[data-mime-type="
                                  "'application/vnd.jupyter.error']")
            assert errors.count() == 0, f"error output in the primer:\n{errors.first.text_content()[:2000]}"
            charts = page.evaluate("""() => [...document.querySelectorAll('.jp-RenderedSVG')].map(e => {
                const img = e.querySelector('img'), svg = e.querySelector('svg');
                const source = img ? decodeURIComponent(img.src.split(',').slice(1).join(',')) : (svg ? svg.outerHTML : '');
                return {width: img ? img.naturalWidth : (svg ? svg.getBoundingClientRect().width : 0),
                        height: img ? img.naturalHeight : (svg ? svg.getBoundingClientRect().height : 0),
                        marks: (source.match(/<(path|rect|line|circle|text)\\b/g) || []).length};
            })""")
            drawn = [c for c in charts if c["width"] > 0 and c["height"] > 0 and c["marks"] > 0]
            assert drawn, f"no rendered altair SVG chart (.jp-RenderedSVG) with marks; found {charts}"
            # every chart in the page — plain outputs and widgets' inline SVG — draws marks one can see
            measured = page.evaluate(CHART_MARKS, page.locator(".jp-NotebookPanel").first.element_handle())
            assert len(measured) >= 6, f"expected the primer's charts and widget views, measured {len(measured)}"
            hidden = {i: layer_problems(layers) for i, layers in enumerate(measured) if layer_problems(layers)}
            assert not hidden, f"charts with invisible marks (chart index: problems): {hidden}"

            page.locator(".jp-OutputArea-output svg.marks").last.scroll_into_view_if_needed()   # the race's chart
            page.screenshot(path=str(OUTPUTS / "browser_primer_race.png"))

            readout = depth_slider.locator(".widget-readout")
            depth_before = int(readout.text_content())
            before_text = calc.text_content()
            before = parameter_count(before_text)
            depth_slider.scroll_into_view_if_needed()
            page.screenshot(path=str(OUTPUTS / "browser_primer_before.png"))

            depth_slider.locator(".noUi-handle").click()
            for _ in range(3):
                page.keyboard.press("ArrowRight")
            wait("the calculator to change after moving depth", 60, page.wait_for_function,
                 "before => document.querySelector('.dwlib-calc').textContent !== before", arg=before_text)
            after_text = settled_text(calc)
            depth_after = int(readout.text_content())
            after = parameter_count(after_text)
            page.screenshot(path=str(OUTPUTS / "browser_primer.png"))
            moved = f"depth {depth_before} -> {depth_after}: {before:,} -> {after:,}"
            assert depth_after > depth_before, f"ArrowRight did not move the depth slider ({moved})"
            assert after > before, (f"non-embedding parameters should grow with depth ({moved})"
                                    f"\nbefore: {before_text!r}\nafter: {after_text!r}")
            # blocks are identical, so N is linear in D up to the final norm's W gains
            assert after / before == pytest.approx(depth_after / depth_before, rel=0.01), (
                f"the displayed count does not follow the slider's depth ({moved})")
        finally:
            browser.close()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_report_opens_offline_with_visible_charts(chromium, tmp_path):
    from playwright.sync_api import sync_playwright

    from dwlib import notebooks, report
    outputs = tmp_path / "outputs"
    notebooks.execute("01_primer", dict(preset="smoke", store_path=str(tmp_path / "runs.sqlite"),
                                        output_dir=str(outputs / "01_primer")))
    index = report.build(outputs, tmp_path / "report")
    OUTPUTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            fetched = []
            refuse = lambda route: (fetched.append(route.request.url), route.abort())   # noqa: E731
            page.route(re.compile(r"^(?!file:|data:)"), refuse)
            page.goto(index.as_uri())
            page.screenshot(path=str(OUTPUTS / "browser_report_index.png"))
            body = page.text_content("body")
            assert "01_primer" in body and "preset smoke" in body, body[:500]
            thumbs = page.evaluate("() => [...document.images].map(i => [i.alt, i.naturalWidth, i.naturalHeight])")
            assert len(thumbs) == 3 and all(w > 0 and h > 0 for _, w, h in thumbs), thumbs
            measured = page.evaluate(CHART_MARKS, page.locator("body").element_handle())
            assert len(measured) == 3 and not [layer_problems(m) for m in measured if layer_problems(m)], measured

            page.click("text=01_primer")
            page.wait_for_load_state()
            images = page.evaluate("() => [...document.querySelectorAll('.jp-RenderedSVG img')]"
                                   ".map(i => [i.alt, i.naturalWidth])")
            assert len(images) >= 3 and all(w > 0 for _, w in images), images
            measured = page.evaluate(CHART_MARKS, page.locator("main").element_handle())
            assert not [layer_problems(m) for m in measured if layer_problems(m)], measured
            box = page.locator("math").first.bounding_box()     # N = 12·D·W², drawn as MathML
            assert box and box["width"] > 20 and box["height"] > 5, box
            assert not fetched, f"the report tried to load from the network: {fetched}"
        finally:
            browser.close()
