"""The --html site in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright): opened
from disk, it shows exactly the known numbers, sorts, filters, opens a cell (by click and by URL
fragment) with its protocol and a drawn curve, and makes no network request. A screenshot is written
to $DECISION_SEQ_ARTIFACTS (else the test's tmp dir).

Skipped when /usr/bin/chromium or playwright is missing, unless CI_REQUIRE_BROWSER=1 (then they fail).
Playwright's own browser downloads are never used: `playwright install` is not needed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from decision_seq.leaderboard import html
from decision_seq.leaderboard.grouping import build_leaderboard
from tests.leaderboard.helpers import HOPPER_BEST, HOPPER_LAST, WALKER_LAST, ci_by_hand, write_run

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPS, SEED = 400, 3
DM_LAST = [60.0, 64.0]  # dmamba on our hopper rebuild: mean 62, between dt's hopper (30) and walker (75)
HOPPER_ID = "d4rl-hopper-medium-replay-v2--dt"


def _need_browser() -> None:
    missing = []
    if not CHROMIUM.is_file():
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright (pip install playwright; no `playwright install` needed)")
    if missing:
        reason = "browser tests need " + " and ".join(missing)
        if os.environ.get("CI_REQUIRE_BROWSER") == "1":
            pytest.fail(reason + " [CI_REQUIRE_BROWSER=1]")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A site from runs with known numbers: dt on two D4RL sets, dmamba on a rebuild, a protocol split."""
    root = tmp_path_factory.mktemp("runs")
    for s in range(4):
        write_run(root, f"dt_hopper_{s}", seed=s, last=HOPPER_LAST[s], best=HOPPER_BEST[s])
        write_run(root, f"dt_walker_{s}", dataset_id="d4rl/walker2d/medium-v2", seed=s, last=WALKER_LAST[s])
    for s, last in enumerate(DM_LAST):
        write_run(root, f"dm_hopper_{s}", dataset_id="decision-seq/hopper/medium-v0", model="dmamba", seed=s, last=last)
    write_run(
        root, "dm_hopper_long", dataset_id="decision-seq/hopper/medium-v0", model="dmamba", seed=5, last=1.0, steps=2000
    )
    out = tmp_path_factory.mktemp("site") / "site"
    html.write_site(build_leaderboard([root], reps=REPS, seed=SEED), out, generated_at="2026-01-01T00:00:00Z")
    return out


@pytest.fixture(scope="module")
def browser():
    _need_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def open_page(browser, site):
    """open_page(fragment) -> the page loaded from file://; afterwards: no request left the disk, no JS error."""
    requests, errors, contexts = [], [], []

    def route(r):  # record every request; only local files may load
        requests.append(r.request.url)
        if r.request.url.startswith("file://"):
            r.continue_()
        else:
            r.abort()

    def open_(fragment: str = "", **context_kw):
        ctx = browser.new_context(viewport={"width": 1280, "height": 900}, **context_kw)
        contexts.append(ctx)
        ctx.route("**/*", route)
        page = ctx.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((site / "index.html").as_uri() + fragment)
        page.wait_for_selector("#cell-table tbody tr")
        return page

    yield open_
    for ctx in contexts:
        ctx.close()
    assert requests and all(u.startswith("file://") for u in requests), requests
    assert any(u.endswith("uPlot.iife.min.js") for u in requests)  # the assets did load, from disk
    assert not errors


def _column(page, table: str, key: str) -> list[str]:
    return page.eval_on_selector_all(f"#{table} tbody td[data-key='{key}']", "tds => tds.map(td => td.textContent)")


def _f(x: float) -> str:
    return f"{x:.1f}"


def test_tables_show_the_known_numbers(open_page):
    page = open_page()
    assert _column(page, "cell-table", "dataset") == [
        "d4rl/hopper/medium-replay-v2",
        "d4rl/walker2d/medium-v2",
        "decision-seq/hopper/medium-v0",
        "decision-seq/hopper/medium-v0",
    ]
    assert _column(page, "cell-table", "last") == ["30.0 ± 21.6", "75.0 ± 20.8", "62.0 ± 2.8", "1.0 ± -"]
    lo, hi = ci_by_hand([HOPPER_LAST], reps=REPS, seed=SEED)
    assert _column(page, "cell-table", "last_ci")[0] == f"[{_f(lo)}, {_f(hi)}]"
    lo, hi = ci_by_hand([HOPPER_BEST], reps=REPS, seed=SEED)
    assert _column(page, "cell-table", "best")[0] == "41.2 ± 33.5"  # mean 41.25: a tie, rounded to even
    assert hi == 76.25  # an exact tie: shown as leaderboard.md rounds it (76.2), not as JS's toFixed (76.3)
    assert _column(page, "cell-table", "best_ci")[0] == f"[{_f(lo)}, {_f(hi)}]"
    assert _column(page, "cell-table", "published") == [
        "82.7 (DT paper, last)",
        "74.0 (DT paper, last)",
        "83.5† (DMamba paper, best)",
        "83.5† (DMamba paper, best)",
    ]
    assert _column(page, "cell-table", "seeds") == ["4", "4", "2", "1"]
    # the protocol split: two dmamba rows, each marked, and the warning shown
    assert _column(page, "cell-table", "model")[2:] == ["dmamba ⚠ steps=1000", "dmamba ⚠ steps=2000"]
    assert page.is_visible("#warnings") and "differ in protocol field 'steps'" in page.inner_text("#warnings")

    # dmamba's protocol families are aggregated apart
    assert _column(page, "aggregate-table", "model") == ["dmamba [steps=1000]", "dmamba [steps=2000]", "dt"]
    assert _column(page, "aggregate-table", "last_mean")[:2] == ["62.0 [60.0, 64.0]", "1.0"]
    lo, hi = ci_by_hand([HOPPER_LAST, WALKER_LAST], "mean", REPS, SEED)
    assert _column(page, "aggregate-table", "last_mean")[2] == f"52.5 [{_f(lo)}, {_f(hi)}]"
    lo, hi = ci_by_hand([HOPPER_LAST, WALKER_LAST], "iqm", REPS, SEED)
    assert _column(page, "aggregate-table", "last_iqm")[2] == f"52.5 [{_f(lo)}, {_f(hi)}]"
    assert _column(page, "aggregate-table", "published")[2].startswith(f"{_f((82.7 + 74.0) / 2)} (DT paper, last); ")


def test_sort_and_filter(open_page):
    page = open_page()
    header = "#cell-table th[data-key='last']"
    page.click(header)
    assert _column(page, "cell-table", "last") == ["1.0 ± -", "30.0 ± 21.6", "62.0 ± 2.8", "75.0 ± 20.8"]
    assert page.get_attribute(header, "aria-sort") == "ascending"
    page.click(header)
    assert _column(page, "cell-table", "last") == ["75.0 ± 20.8", "62.0 ± 2.8", "30.0 ± 21.6", "1.0 ± -"]

    page.select_option("#filter-backbone", "mamba")
    assert _column(page, "cell-table", "model") == ["dmamba ⚠ steps=1000", "dmamba ⚠ steps=2000"]
    assert page.inner_text("#row-count") == "2 of 4 rows"
    page.select_option("#filter-backbone", "")
    page.select_option("#filter-env", "walker2d")
    assert _column(page, "cell-table", "dataset") == ["d4rl/walker2d/medium-v2"]
    page.select_option("#filter-env", "hopper")
    page.select_option("#filter-level", "medium")  # medium, not medium-replay
    assert _column(page, "cell-table", "dataset") == ["decision-seq/hopper/medium-v0"] * 2


def _curve_pixels(page) -> int:
    """Pixels the chart drew (non-transparent) on its canvas."""
    return page.eval_on_selector(
        "#chart canvas",
        "c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        " let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }",
    )


def _protocol(page) -> dict[str, str]:
    rows = page.eval_on_selector_all(
        "#protocol-table tr", "trs => trs.map(tr => [tr.cells[0].textContent, tr.cells[1].textContent])"
    )
    return dict(rows)


def test_open_cell_by_click_and_by_fragment(open_page, tmp_path):
    page = open_page()
    assert not page.is_visible("#detail")
    page.click(f"#cell-table tbody tr[data-id='{HOPPER_ID}'] td[data-key='seeds']")
    page.wait_for_selector("#detail canvas")
    assert page.evaluate("location.hash") == f"#cell={HOPPER_ID}"
    proto = _protocol(page)
    assert proto["eval targets"] == "[3600, 1800]" and proto["episodes per target"] == "10"
    assert proto["training steps"] == "1000" and proto["eval env"] == "Hopper-v4" and proto["dataset version"] == "v2"
    assert "seed=0,1,2,3" in page.inner_text("#detail-command")
    assert _curve_pixels(page) > 500

    artifacts = Path(os.environ.get("DECISION_SEQ_ARTIFACTS") or tmp_path)
    artifacts.mkdir(parents=True, exist_ok=True)
    shot = artifacts / "leaderboard-site.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000

    # the permalink opens the other split row directly, in dark mode, with its warning
    split = "decision-seq-hopper-medium-v0--dmamba--steps-2000"
    page = open_page(f"#cell={split}", color_scheme="dark")
    page.wait_for_selector("#detail canvas")
    assert page.inner_text("#detail-title") == "decision-seq/hopper/medium-v0 / dmamba [steps=2000]"
    assert _protocol(page)["training steps"] == "2000"
    assert "Protocol mismatch" in page.inner_text("#detail-warning")
    assert _curve_pixels(page) > 200
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(21, 25, 30)"  # the dark palette
