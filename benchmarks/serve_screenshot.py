"""The README's screenshot of `fashion serve`: the live page on a run, after a photo search.

    python benchmarks/serve_screenshot.py --run out --photo PHOTO --output images/serve.jpg

Starts `fashion serve RUN` on 127.0.0.1 (a free port), opens / in headless Chromium (Debian's, via
Playwright), uploads the photo, waits for every result thumbnail, and saves a PNG; stops the server.
Without --run it first makes the README's quick-start run (`measure_sim.py`, bundled sample) in a
temporary folder.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, os.fspath(REPO))

from fashion.server.launch import running_server  # noqa: E402
from tests.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402  (one definition of the browser flags)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default=None, help="a finished run (default: make the quick-start run)")
    parser.add_argument("--photo", default=None, help="photo to search (default: a bundled sample photo)")
    parser.add_argument("--output", default=os.fspath(REPO / "images" / "serve.jpg"))
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1000)
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        run = args.run
        if run is None:
            run = os.path.join(tmp, "out")
            subprocess.run([sys.executable, os.fspath(REPO / "measure_sim.py"), "--output_dir", run, "-q"], check=True)
        photo = args.photo or os.fspath(min((REPO / "fashion" / "data" / "sample" / "img" / "Dress").glob("*.jpg")))
        with running_server(run) as server, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            # bypass_csp: Playwright polls wait_for_function with eval, which the page's CSP forbids
            page = browser.new_page(viewport={"width": args.width, "height": args.height}, bypass_csp=True)
            page.goto(server.url + "/", wait_until="load")
            page.wait_for_selector("#label-precision tr >> nth=1")
            page.set_input_files("#photo", photo)
            page.wait_for_selector("#results .card")
            page.wait_for_function(
                "() => [...document.querySelectorAll('img')].every(i => i.complete && i.naturalWidth > 0)")
            jpeg = Path(args.output).suffix.lower() in (".jpg", ".jpeg")
            page.screenshot(path=args.output, full_page=False, type="jpeg" if jpeg else "png", quality=82 if jpeg else None)
            browser.close()
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
