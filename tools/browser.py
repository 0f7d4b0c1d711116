"""Seeing what a user sees: headless Chromium, offline, screenshots an HTML page or dumps its DOM.

    python -m tools.browser screenshot plots/index.html --out plots.png
    python -m tools.browser dom plots/index.html              # the DOM after its scripts ran
    python -m tools.browser vega-template .cache/vega.html    # for dvc plots --html-template

Chromium runs with every network request failing (NETWORK_OFF), so a report that needs the
internet looks broken here as it would on a closed network. `dvc plots show` loads vega,
vega-lite and vega-embed from a CDN; `write_vega_template` inlines the copies that
`make system-deps` installs into .tools/node_modules, so DVC's plots render offline.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from matplotlib import image as mpimg

from cd4ml.io import UserError, atomic_path, run_main

log = logging.getLogger("browser")

ROOT = Path(__file__).resolve().parents[1]
NODE_MODULES = ROOT / ".tools" / "node_modules"
BINARIES = ("chromium", "chromium-browser", "google-chrome")
# As root in a container: no sandbox, no GPU, and none of Chromium's own calls home.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
# Every host name and IP address (loopback too) fails to resolve: a page gets no network at all.
# The proxy that nothing serves catches any request that would not go through the resolver.
NETWORK_OFF = (
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-server=127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
)
# Page timers run fast-forwarded up to this much virtual time before the capture, so that
# scripts that draw after load (vega-embed) have drawn.
VIRTUAL_TIME_MS = 5000
VEGA_BUILDS = (
    "vega/build/vega.min.js",
    "vega-lite/build/vega-lite.min.js",
    "vega-embed/build/vega-embed.min.js",
)
# DVC's own page (dvc_render.html.PAGE_HTML) without its {scripts}, the CDN <script> tags:
# DVC fills {plot_divs} (required) and {refresh_tag}, and adds nothing the template lacks.
VEGA_TEMPLATE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    {refresh_tag}
    <title>DVC Plot</title>
SCRIPTS
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def chromium() -> str:
    """Path of the Chromium binary on PATH (chromium, chromium-browser or google-chrome)."""
    for name in BINARIES:
        found = shutil.which(name)
        if found:
            return found
    raise UserError("Chromium not found: run make system-deps (installs Debian's chromium)")


def _reason(stderr: str) -> str:
    """Chromium's own error line, without the dbus noise of a machine with no session bus."""
    for line in stderr.splitlines():
        if "ERROR:" in line and "dbus/" not in line:
            return line.split("] ", 1)[-1].strip()
    return ""


def _run(html: Path, args: list[str], workdir: Path, timeout: float, what: str) -> tuple[str, str]:
    """Run headless Chromium, offline, with a fresh profile in `workdir`, on file://html; its
    stdout and stderr. Chromium exits 0 even when the page failed: callers check its output."""
    html = html.resolve()
    if not html.is_file():
        raise UserError(f"{what} {html}: no such file")
    command = [
        chromium(),
        *FLAGS,
        *NETWORK_OFF,
        f"--user-data-dir={workdir / 'profile'}",
        f"--virtual-time-budget={VIRTUAL_TIME_MS}",
        *args,
        html.as_uri(),
    ]
    log.debug("running %s", command)
    # A session of its own, so that a timeout kills Chromium's helper processes too.
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise UserError(f"{what} {html}: Chromium timed out after {timeout:g} s") from None
    if proc.returncode != 0:
        detail = _reason(err) or f"exit status {proc.returncode}"
        raise UserError(f"{what} {html}: Chromium failed: {detail}")
    if "Page load failed" in err:
        raise UserError(f"{what} {html}: {_reason(err)}")
    return out, err


def _workdir() -> tempfile.TemporaryDirectory[str]:
    """A temporary folder for Chromium's profile and output, removed afterwards."""
    return tempfile.TemporaryDirectory(prefix="cd4ml-chromium-", ignore_cleanup_errors=True)


def screenshot(
    html: Path, png: Path, width: int = 1280, height: int = 2000, timeout: float = 60
) -> None:
    """Screenshot `html` (width x height pixels, offline) into `png`."""
    with _workdir() as tmp:
        shot = Path(tmp) / "shot.png"
        args = [f"--screenshot={shot}", f"--window-size={width},{height}"]
        _, err = _run(Path(html), args, Path(tmp), timeout, "screenshot of")
        if not shot.is_file():
            detail = _reason(err) or "it wrote no PNG"
            raise UserError(f"screenshot of {html}: Chromium failed: {detail}")
        with atomic_path(png) as path:
            path.write_bytes(shot.read_bytes())
    log.info("screenshot of %s: %s (%dx%d)", html, png, width, height)


def dump_dom(html: Path, timeout: float = 60) -> str:
    """The DOM of `html` (offline) after its scripts ran, as HTML."""
    with _workdir() as tmp:
        out, _ = _run(Path(html), ["--dump-dom"], Path(tmp), timeout, "DOM of")
    return out


def is_blank(png: Path) -> bool:
    """True when every pixel of the image has the same colour."""
    pixels = mpimg.imread(png)
    return bool(np.all(pixels == pixels[0, 0]))


def vega_scripts(node_modules: Path = NODE_MODULES) -> str:
    """The minified vega, vega-lite and vega-embed as inline <script> elements."""
    missing = [build for build in VEGA_BUILDS if not (node_modules / build).is_file()]
    if missing:
        raise UserError(
            f"{node_modules / missing[0]} is missing: run make system-deps "
            "(installs vega@5 vega-lite@5 vega-embed@6)"
        )
    # "</script" inside the code would end the element early; "<\/" means the same in JS.
    codes = [(node_modules / build).read_text(encoding="utf-8") for build in VEGA_BUILDS]
    escaped = [code.replace("</script", "<\\/script") for code in codes]
    return "\n".join(f"    <script>\n{code}\n    </script>" for code in escaped)


def write_vega_template(path: Path, node_modules: Path = NODE_MODULES) -> Path:
    """Write an HTML template for `dvc plots show|diff --html-template` with the vega
    libraries inlined, so the plots render without a network; return `path`."""
    page = VEGA_TEMPLATE.replace("SCRIPTS", vega_scripts(node_modules))
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    log.info("wrote %s (%d kB)", path, len(page) // 1024)
    return Path(path)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    shot = sub.add_parser("screenshot", help="screenshot an HTML file, offline, to a PNG")
    shot.add_argument("html", type=Path)
    shot.add_argument("--out", type=Path, help="the PNG (default: next to the HTML)")
    shot.add_argument("--width", type=int, default=1280)
    shot.add_argument("--height", type=int, default=2000)
    dom = sub.add_parser("dom", help="print the DOM of an HTML file after its scripts ran")
    dom.add_argument("html", type=Path)
    tmpl = sub.add_parser("vega-template", help="write the offline template for dvc plots")
    tmpl.add_argument("out", type=Path)
    tmpl.add_argument(
        "--node-modules", type=Path, default=NODE_MODULES, help="where npm put vega (.tools/)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.command == "screenshot":
        out = args.out or args.html.with_suffix(".png")
        screenshot(args.html, out, args.width, args.height)
        print(out, flush=True)
    elif args.command == "dom":
        print(dump_dom(args.html), end="", flush=True)
    else:
        print(write_vega_template(args.out, args.node_modules), flush=True)


if __name__ == "__main__":
    run_main(main)
