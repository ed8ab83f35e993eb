"""Issue #30: the documentation. README.md is the front door (at most 200 lines) and links to docs/*.md and
config/README.md; every relative link and image of those resolves, anchors included; the layout table names
every module of scripts/pfscalib; config/README.md names every config key and every visit-table column."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parents[1]
PACKAGE = PROJECT / "scripts/pfscalib"
SCHEMAS = PACKAGE / "plan" / "schemas"
README = PROJECT / "README.md"
CONFIG_README = PROJECT / "config/README.md"
LAYOUT_PAGE = PROJECT / "docs/internals.md"
README_MARK = "<!-- newcomer:"  # tests/test_workflow_e2e.py runs the commands of these blocks


def documents() -> list[Path]:
    return [README, CONFIG_README, *sorted((PROJECT / "docs").glob("*.md"))]


def prose(text: str) -> str:
    """The text without fenced code blocks and inline code spans, where brackets are not links."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def links(text: str) -> list[str]:
    """Every link and image target of a Markdown text ([text](target), ![alt](target))."""
    return re.findall(r"\]\(([^)\s]+)\)", prose(text))


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped (but - and _), spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip())  # a link in a heading: its text
    text = text.replace("&lt;", "").replace("&gt;", "")
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a Markdown file's headings (a repeated heading gets -1, -2, ... as on GitHub)."""
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", text, flags=re.M):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def test_slug_is_github_s():
    assert slug('spectralOffset: auto (the "black-belt" step)') == "spectraloffset-auto-the-black-belt-step"
    assert slug("`steps.<step>`: per-step settings") == "stepsstep-per-step-settings"
    assert slug("Rebuild one camera, build only what one camera needs") == (
        "rebuild-one-camera-build-only-what-one-camera-needs"
    )


def test_readme_is_a_front_door():
    """At most 200 lines, linking every page of docs/ and config/README.md, and keeping the newcomer blocks."""
    text = README.read_text()
    assert len(text.splitlines()) <= 200, len(text.splitlines())
    targets = {t.split("#")[0] for t in links(text)}
    pages = {f"docs/{p.name}" for p in (PROJECT / "docs").glob("*.md")} | {"config/README.md"}
    assert pages <= targets, sorted(pages - targets)
    assert "docs/rulegraph.svg" in targets
    assert text.count(README_MARK) >= 3  # the e2e test's newcomer commands stay in the README


def test_every_relative_link_and_image_resolves():
    """In README.md, docs/*.md and config/README.md: every relative link or image names a file of the
    repository, and every #anchor a heading of the target file (or of the page itself)."""
    problems = []
    for doc in documents():
        for target in links(doc.read_text()):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
                continue
            file, _, anchor = target.partition("#")
            path = (doc.parent / file).resolve() if file else doc
            where = f"{doc.relative_to(PROJECT)}: ({target})"
            if not path.exists():
                problems.append(f"{where}: no such file")
            elif anchor and path.suffix == ".md" and anchor not in anchors(path):
                problems.append(f"{where}: no heading with anchor #{anchor} in {path.relative_to(PROJECT)}")
    assert not problems, "\n".join(problems)


def test_the_layout_table_names_every_module():
    """Every .py file and sub-package of scripts/pfscalib has a row of its own in the layout table."""
    rows = [ln for ln in LAYOUT_PAGE.read_text().splitlines() if ln.startswith("| `")]
    named = {name for row in rows for name in re.findall(r"`([^`]+)`", row.split(" | ")[0])}
    modules = [p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts]
    packages = [p.parent.relative_to(PACKAGE).as_posix() + "/" for p in PACKAGE.rglob("__init__.py")]
    wanted = [m for m in [*modules, *packages] if m != "./"]
    assert len(wanted) > 30
    missing = sorted(m for m in wanted if m not in named)
    assert not missing, f"not in the layout table of {LAYOUT_PAGE.relative_to(PROJECT)}: {missing}"


def test_config_readme_names_every_key():
    """Every top-level key of the config schema, every steps.<step> setting, the keys of the nested
    sections, and every visit-table column are named (in backticks) in config/README.md."""
    text = CONFIG_README.read_text()
    named = set(re.findall(r"`([^`\n]+)`", text))
    words = {w for n in named for w in re.split(r"[^\w]+", n) if w}
    schema = yaml.safe_load((SCHEMAS / "config.schema.yaml").read_text())
    top = list(schema["properties"])
    steps = list(schema["$defs"]["step"]["properties"])
    nested = [
        f"{section}.{key}"
        for section in ("offset_search", "collections", "disk", "demo", "executables")
        for key in schema["properties"][section]["properties"]
    ]
    columns = list(yaml.safe_load((SCHEMAS / "visits.schema.yaml").read_text())["properties"])
    assert {"datastore", "steps", "offset_search", "accept"} <= set(top) and "threads" in steps
    missing = [f"`{k}`" for k in top if k not in named]
    missing += [f"steps.<step>.{k}" for k in steps if f"`{k}`" not in text]
    missing += [k for k in nested if k not in named and k.split(".")[1] not in words]
    missing += [f"column {c}" for c in columns if f"`{c}`" not in text]
    assert not missing, f"config/README.md does not name: {missing}"
    for step in schema["properties"]["steps"]["properties"]:  # the step names, for steps.<step>
        assert f"`{step}`" in text, step


def test_no_pointer_to_a_readme_section_that_moved():
    """Comments and messages point to the page that holds the subject (docs/disk.md), not to a README
    section by its title (README "Disk budget"), which the README no longer has."""
    sources = [
        *PACKAGE.rglob("*.py"), *PACKAGE.rglob("*.yaml"), *(PROJECT / "rules").glob("*.smk"),
        *(PROJECT / "profiles").rglob("*.yaml"), *(PROJECT / "config").glob("*.yaml"),
        PROJECT / "Snakefile", PROJECT / "Makefile",
    ]  # fmt: skip
    pattern = re.compile(r"README(\.md)? (\"|Disk|section)")
    found = [f"{p.relative_to(PROJECT)}: {m.group(0)}" for p in sources for m in pattern.finditer(p.read_text())]
    assert not found, found


def test_config_readme_example_is_a_valid_config():
    """The example of config/README.md passes the config schema as written."""
    from pfscalib.plan.config import validate_config

    blocks = re.findall(r"^```yaml\n(.*?)^```", CONFIG_README.read_text(), flags=re.M | re.S)
    assert blocks
    for block in blocks:
        validate_config(yaml.safe_load(block), "config/README.md")
