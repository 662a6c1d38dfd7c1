"""The sample report in a real browser: Debian's Chromium, driven by Playwright.

A short run of the sample shop (precompute, simulate with the ablation and a freshness
sweep, bandits on its RESULTS, OPE, contextual bandits, retraining, drift) feeds `rtml
report`; the page is opened from file:// (nothing listens on a port) at 1280 and 390 px and
checked: no console error, no failed resource load, every image and SVG drawn with a size,
no horizontal scroll, and the verdict holds the numbers of the JSON inputs. A screenshot of
each width is saved under the test's tmp dir (printed, to look at).

Chromium comes from apt (`.ci/run` installs it); Playwright never downloads a browser here.
Where /usr/bin/chromium is missing the test is skipped with that reason.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rtml_cli.cli import app

REPO = Path(__file__).resolve().parent.parent
SHOP = REPO / "sample_data" / "shop"
CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WIDTHS = (1280, 390)

pytestmark = pytest.mark.slow


def _run(*args: object) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args], env={"NO_COLOR": "1"})
    assert result.exit_code in (0, 10), (args, result.exit_code, result.stderr)
    return result.stdout


@pytest.fixture(scope="module")
def sample_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("report")
    events = SHOP / "events.parquet"
    art = root / "artifacts"
    _run(
        "precompute",
        events,
        "--items",
        SHOP / "items.parquet",
        "--out",
        art,
        "--as-of",
        "2024-03-22T16:00:00Z",
        "--dim",
        "8",
        "--trees",
        "5",
        "-q",
    )
    docs = root / "docs"
    docs.mkdir()
    results = docs / "results.parquet"
    steps = {
        "simulate": (
            "simulate",
            events,
            "--artifacts",
            art,
            "--end",
            "2024-03-22T22:00:00Z",
            "--train-window",
            "1d",
            "--ablation",
            "--freshness-sweep",
            "0s,1h",
            "--out",
            results,
        ),
        "bandits": (
            "evaluate",
            results,
            "--arms",
            "batch,session-embedding,online-ranker",
            "--seeds",
            "10",
        ),
        "ope": (
            "evaluate",
            "ope",
            SHOP / "bandit.parquet",
            "--policy",
            "linear:0.1",
            "--bootstrap",
            "100",
        ),
        "contextual": ("evaluate", "contextual", SHOP, "--requests", "2000", "--bootstrap", "20"),
        "retrain": (
            "retrain",
            events,
            "--start",
            "2024-03-23",
            "--end",
            "2024-03-26",
            "--schedules",
            "stateless:1d,stateful:1d,triggered,never",
            "--sample",
            "10",
        ),
        "drift": ("drift", "popularity", events, "--end", "2024-03-25"),
    }
    for name, args in steps.items():
        (docs / f"{name}.json").write_text(_run(*args, "--format", "json", "-q"))
    out = root / "report.html"
    _run("report", docs, art, "--out", out, "--bootstrap", "200")
    return {"html": out, "docs": docs, "root": root}


def test_the_sample_report_is_small_and_self_contained(sample_report) -> None:
    page = sample_report["html"].read_text()
    assert sample_report["html"].stat().st_size < 5 * 2**20
    assert "<script" not in page and "<link" not in page
    assert "@import" not in page and "url(http" not in page


def _browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium; "
            ".ci/run does it where apt is available)"
        )
    return sync_api


def test_the_report_in_chromium(sample_report, tmp_path) -> None:
    sync_api = _browser()
    url = sample_report["html"].resolve().as_uri()
    sim = json.loads((sample_report["docs"] / "simulate.json").read_text())
    bandits = json.loads((sample_report["docs"] / "bandits.json").read_text())
    expected = [f"{sim['info']['k']}"]
    batch = next(r for r in sim["summary"] if r["strategy"] == "batch" and r["segment"] == "all")
    expected += [
        f"{batch['hr']:.3f}",
        f"{batch['requests_with_truth']:,}",
        f"{batch['requests']:,}",
    ]
    thompson = next(p for p in bandits["policies"] if p["policy"] == "thompson")
    expected.append(f"{thompson['requests_to_decision']['median']:,.0f}")
    user_data = tempfile.mkdtemp(prefix="rtml-chromium-")
    try:
        with sync_api.sync_playwright() as play:
            context = play.chromium.launch_persistent_context(
                user_data, executable_path=str(CHROMIUM), headless=True, args=ARGS
            )
            try:
                for width in WIDTHS:
                    _check_page(context, url, width, tmp_path, expected)
            finally:
                context.close()
    finally:
        shutil.rmtree(user_data, ignore_errors=True)


def _check_page(context, url: str, width: int, tmp_path: Path, expected: list[str]) -> None:
    page = context.new_page()
    errors: list[str] = []
    failed: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfailed", lambda r: failed.append(r.url[:80]))
    page.on("request", lambda r: failed.append(r.url) if r.url.startswith("http") else None)
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(url, wait_until="load")
    assert errors == [], errors
    assert failed == [], failed
    sizes = page.evaluate(
        """() => [...document.querySelectorAll('img, svg')].map(e => {
            const r = e.getBoundingClientRect();
            return [e.tagName, r.width, r.height, e.tagName !== 'IMG' || (e.complete && e.naturalWidth > 0)];
        })"""
    )
    assert len(sizes) >= 8
    assert all(w > 0 and h > 0 and loaded for _, w, h, loaded in sizes), sizes
    alts = page.evaluate("() => [...document.images].map(i => i.alt.length)")
    assert all(n > 20 for n in alts)
    scroll = page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert scroll[0] <= scroll[1], f"horizontal scroll at {width}px: {scroll}"
    verdict = page.inner_text("#verdict")
    for number in expected:
        assert number in verdict, (number, verdict[:500])
    shot = tmp_path / f"report-{width}.png"
    page.screenshot(path=str(shot))
    page.screenshot(path=str(tmp_path / f"report-{width}-full.png"), full_page=True)
    print(f"screenshot: {shot}")
    page.close()
