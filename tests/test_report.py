"""genreq report: the HTML parses, every image it shows is a PNG file beside it, a real
headless browser loads every image, and the tables say what the database holds (least
confident first, failures grouped by reason)."""
from __future__ import annotations

import html as html_module
import json
import re
import shutil
import struct
import subprocess
import zlib
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest
from helpers import add_track, genreq
from test_cli import invoke

from genreq.app import reporting as report
from genreq.db.session import session_scope

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _no_user_taxonomy(monkeypatch):
    monkeypatch.delenv("GENREQ_TAXONOMY", raising=False)


class Page(HTMLParser):
    """Images, table cells and headings of a page; checks that tags balance."""

    VOID = frozenset({"meta", "img", "br", "link", "input", "hr"})

    def __init__(self):
        super().__init__()
        self.images: list[dict] = []
        self.cells: list[str] = []
        self.headings: list[str] = []
        self.stack: list[str] = []
        self._text: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs))
        if tag not in self.VOID:
            self.stack.append(tag)
        if tag in ("td", "h1", "h2"):
            self._text = []

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()
        if tag == "td":
            self.cells.append("".join(self._text))
        if tag in ("h1", "h2"):
            self.headings.append("".join(self._text))

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)


def assert_png(path: Path) -> tuple[int, int]:
    """A complete PNG: signature, chunks with valid CRCs, IHDR first, IEND last."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    pos, chunks = 8, []
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"{path}: bad CRC in {kind}"
        chunks.append((kind, body))
        pos += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND", path
    width, height = struct.unpack(">II", chunks[0][1][:8])
    assert width > 100 and height > 100
    return width, height


def parse(index: Path) -> Page:
    page = Page()
    page.feed(index.read_text(encoding="utf-8"))
    page.close()
    assert page.stack == [], f"unclosed: {page.stack}"
    return page


@pytest.fixture
def library(db_url):
    start = datetime(2026, 11, 26, 12, tzinfo=timezone.utc)
    with session_scope() as s:
        for i in range(30):
            genre = ["jazz", "rock", "metal"][i % 3]
            confidence = round(0.4 + i * 0.02, 2)
            pop, blues = round((1 - confidence) * 0.6, 4), round((1 - confidence) * 0.4, 4)
            add_track(s, f"/m/{genre}/{i:02d}.flac", "done", genre, confidence,
                      probs={genre: confidence, "pop": pop, "blues": blues},
                      batch_id="run1", queued_at=start, started_at=start + timedelta(seconds=i),
                      finished_at=start + timedelta(seconds=i + 1))
        add_track(s, "/m/<b>bad</b>.mp3", "failed", batch_id="run1", queued_at=start,
                  error="/m/<b>bad</b>.mp3: not decodable audio (ffmpeg: invalid data)")
        add_track(s, "/m/x.mp3", "failed", batch_id="run1", queued_at=start,
                  error="/m/x.mp3: not decodable audio (ffmpeg: moov atom not found)")
        add_track(s, "/m/y.wav", "failed", batch_id="run1", queued_at=start,
                  error="/m/y.wav: too short to classify")
    return db_url


def test_report_html_and_images(library, tmp_path):
    out = tmp_path / "report"
    result = invoke("report", "-o", str(out), "--least", "5")
    index = out / "index.html"
    assert result.stdout == f"{index}\n"
    page = parse(index)
    assert [img["src"] for img in page.images] == ["genres.png", "confidence.png", "failures.png"]
    for img in page.images:
        assert img["alt"]
        assert_png(out / img["src"])
    assert page.headings[0] == "genreq report: 33 tracks"
    assert "Least confident 5" in page.headings
    cells = page.cells
    # least confident first: 0.40, 0.42, ... with their genres, runners-up and paths
    least = cells.index("0.400")
    assert cells[least:least + 3] == ["0.400", "jazz", "pop=0.36 blues=0.24"]
    assert [cells[least + 4 * k + 3] for k in range(5)] == [
        "/m/jazz/00.flac", "/m/rock/01.flac", "/m/metal/02.flac", "/m/jazz/03.flac",
        "/m/rock/04.flac"]
    # failures grouped by reason, without paths or details; the HTML escapes text
    reasons = cells.index("not decodable audio")
    assert cells[reasons:reasons + 4] == ["not decodable audio", "2", "too short to classify", "1"]
    assert "<b>bad" not in index.read_text()
    # last run: 30 finished of 33 tracks, 30 s from the first start to the last result
    run = cells.index("33")
    assert cells[run:run + 4] == ["33", "30", "30.0 s", "1.00 tracks/s"]


def test_report_with_taxonomy(library, tmp_path):
    taxonomy = tmp_path / "genres.toml"
    taxonomy.write_text('[genres]\nmetal = "Rock"\nrock = "Rock"\n')
    out = tmp_path / "report"
    invoke("report", "-o", str(out), "--taxonomy", str(taxonomy))
    cells = parse(out / "index.html").cells
    genres = cells.index("Rock")
    assert cells[genres:genres + 4] == ["Rock", "20", "jazz", "10"]


def test_report_of_an_empty_library(sqlite_url, tmp_path):
    out = tmp_path / "report"
    invoke("report", "-o", str(out))
    page = parse(out / "index.html")
    assert page.images == []
    assert "No track classified yet." in (out / "index.html").read_text()


def test_failure_reason():
    assert report.failure_reason("/a b.mp3: not decodable (x)", "/a b.mp3") == "not decodable"
    assert report.failure_reason(None, "/a") == "unknown error"


@pytest.mark.slow
def test_report_progress_on_stderr(library, tmp_path, monkeypatch):
    monkeypatch.setenv("GENREQ_PROGRESS_EVERY_S", "0")  # a line per track, not per 5 s
    result = genreq("report", "-o", tmp_path / "report")  # stderr is a pipe: plain lines
    assert result.stdout == f"{tmp_path / 'report' / 'index.html'}\n"
    lines = result.stderr.splitlines()
    assert len(lines) == 31
    for n, line in enumerate(lines[:-2], 1):
        assert re.fullmatch(rf"\[[#-]{{24}}\] {n}/30  \d+\.\d tracks/s  ETA \d:\d\d:\d\d",
                            line), line
    assert re.fullmatch(r"\[#{24}\] 30/30  \d+\.\d tracks/s  ETA --", lines[-2])  # none left
    assert re.fullmatch(r"\[#{24}\] 30/30  \d+\.\d tracks/s  in \d:\d\d:\d\d", lines[-1])
    monkeypatch.delenv("GENREQ_PROGRESS_EVERY_S")  # a quick report shows no progress
    assert genreq("report", "-o", tmp_path / "again").stderr == ""


BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
BROWSER_TIMEOUT_S = 60
# Appended to a copy of the page: once everything has loaded, it writes into the DOM how
# many images there are and which did not decode (naturalWidth 0), for --dump-dom to show.
IMAGE_CHECK = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const broken = images.filter(i => !(i.complete && i.naturalWidth > 0));
  const out = document.createElement("pre");
  out.id = "image-check";
  out.textContent = JSON.stringify({
    images: images.length,
    loaded: images.length - broken.length,
    broken: broken.map(i => i.getAttribute("src")),
    sizes: images.map(i => [i.naturalWidth, i.naturalHeight]),
  });
  document.body.appendChild(out);
});
</script>"""


def browser_image_check(page: Path) -> dict:
    """Open `page` in headless chromium and return what IMAGE_CHECK wrote."""
    result = subprocess.run(
        [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={page.parent / '.chromium-profile'}",
         "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
        check=False, capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )
    found = re.search(r'<pre id="image-check">(.*?)</pre>', result.stdout, re.DOTALL)
    assert found, f"{BROWSER} exited {result.returncode}, no check in its DOM:\n" \
                  f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    return json.loads(html_module.unescape(found.group(1)))


@pytest.mark.skipif(BROWSER is None, reason="no chromium or chromium-browser on PATH "
                                            "(apt-get install chromium)")
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.slow
def test_report_images_load_in_a_headless_browser(library, tmp_path):
    out = tmp_path / "report"
    genreq("report", "-o", out)
    original = (out / "index.html").read_text(encoding="utf-8")
    assert original.count("</body>") == 1
    # Copies beside the original, so the page's relative image paths resolve the same.
    checked = out / "browser-check.html"
    checked.write_text(original.replace("</body>", IMAGE_CHECK + "</body>"), encoding="utf-8")
    seen = browser_image_check(checked)
    assert seen["images"] == len(parse(out / "index.html").images) == 3
    assert (seen["loaded"], seen["broken"]) == (3, []), seen
    assert all(w > 100 and h > 100 for w, h in seen["sizes"]), seen
    # The check can fail: the same page with one image whose file is missing says so.
    broken = out / "browser-check-broken.html"
    broken.write_text(original.replace(
        "</body>", '<img src="missing.png" alt="x">' + IMAGE_CHECK + "</body>"),
        encoding="utf-8")
    seen = browser_image_check(broken)
    assert (seen["images"], seen["loaded"], seen["broken"]) == (4, 3, ["missing.png"]), seen
