"""The HTML report in a real browser: headless Debian Chromium (Playwright, never ``playwright
install``) opens the report ``workbench report`` wrote for a paper session, checks that every
section renders with its plots and tables, that no number is printed in scientific notation, and
saves a full-page screenshot under test-artifacts/browser/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.test_report import SECTIONS, scientific, write_report

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts" / "browser"


def test_the_report_renders_every_section_without_scientific_notation(tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("needs /usr/bin/chromium (make chromium)")
    from playwright.sync_api import expect, sync_playwright

    session_id, output, _ = write_report(tmp_path)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(output.as_uri())
            for section in SECTIONS:
                expect(page.locator("h2", has_text=section).first).to_be_visible(timeout=30_000)
            images = page.locator("img")
            assert images.count() >= 1
            for i in range(images.count()):  # every plot decoded and drawn
                assert images.nth(i).evaluate("img => img.complete && img.naturalWidth > 0")
            assert page.locator("table").count() >= 6
            text = page.locator("body").inner_text()
            assert session_id in text and "Traceback" not in text
            assert not scientific(text), scientific(text)[:5]
            assert re.search(r"Sharpe ratio \(annualised\)\s+-?[\d,]+\.\d\d", text)
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 50_000
