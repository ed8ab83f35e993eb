"""The pictures of a Snakemake report, checked as a reader sees them: every embedded PNG decodes (matplotlib),
loads in headless Chromium, and the report page renders. Used by test_workflow_e2e.py and test_offsets.py."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from conftest import run

PNG_URI = re.compile(r"data:image/png;[^,\"]*base64,[A-Za-z0-9+/=]+")
# serialises apt with the other tests that install packages (tests/postgres/server.sh, tests/slurm/cluster.sh)
APT = "flock /var/lock/pfscalib-apt.lock apt-get -o DPkg::Lock::Timeout=600"

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() != 0:
        if os.environ.get("CI"):  # CI checks what a reader sees (as conftest.require_root)
            pytest.fail("headless Chromium is not installed and CI is not root: the report pictures are unchecked")
        pytest.skip("headless Chromium is not installed (apt-get install chromium, as root)")
    run(
        f"{APT} update -qq && DEBIAN_FRONTEND=noninteractive {APT} install -y -qq --no-install-recommends chromium",
        check=True,
    )
    return shutil.which("chromium")


def png(uri: str) -> bytes:
    return base64.b64decode(uri.split("base64,", 1)[1])


def report_results(html: str) -> dict[str, dict]:
    """The report's results as Snakemake embeds them (`var results = {...}`): path -> name, labels, data_uri."""
    start = re.search(r'<script id="results">\s*var results = ', html).end()
    return json.JSONDecoder().raw_decode(html, start)[0]


def first_page(html: str) -> str:
    """The workflow description the report opens on (`var workflow_desc = "..."`), as HTML."""
    start = re.search(r"var workflow_desc = ", html).end()
    return json.JSONDecoder().raw_decode(html, start)[0]


def check_pictures_render(report: Path, tmp_path: Path) -> list[bytes]:
    """Every PNG of the report decodes and is a real picture, all load in headless Chromium, and a
    screenshot of the report is not blank. Returns the PNGs (one per data URI, in the report's order)."""
    import matplotlib.image

    uris = PNG_URI.findall(report.read_text())
    assert uris, f"no picture in {report}"
    pictures = [png(u) for u in uris]
    for picture in pictures:
        assert matplotlib.image.imread(io.BytesIO(picture)).shape[0] > 100
    browser = chromium()
    page = tmp_path / "images.html"
    sources = ",".join(f'"{u}"' for u in uris)
    page.write_text(f"""<html><body><script>
const srcs = [{sources}]; let ok = 0, done = 0;
function finish() {{ if (++done === srcs.length) document.body.setAttribute("data-loaded", ok + "/" + srcs.length); }}
for (const s of srcs) {{ const im = new Image(); im.onload = () => {{ if (im.naturalWidth > 0) ok++; finish(); }};
  im.onerror = finish; im.src = s; }}
</script></body></html>""")
    dom = run(
        [
            browser,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            page.as_uri(),
        ],
        check=True,
    ).stdout
    assert f'data-loaded="{len(uris)}/{len(uris)}"' in dom
    shot = tmp_path / "report.png"
    run(
        [
            browser,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile2'}",
            "--virtual-time-budget=10000",
            "--window-size=1280,900",
            f"--screenshot={shot}",
            report.as_uri(),
        ],
        check=True,
    )
    assert matplotlib.image.imread(shot).std() > 0.05  # the report rendered something, not a blank page
    return pictures
