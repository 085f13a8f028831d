"""The example app's page in a real browser: pytest with Playwright
(pytest-playwright's `page` fixture), driving Debian's Chromium.

Run by 40-page.sh, which checks that the app is real and that Playwright
and Chromium are there, then runs

    python -m pytest page_test.py --junitxml="$CCCI_JUNIT_OUT" \
        --screenshot only-on-failure \
        --output "$CCCI_ARTIFACTS/page-<tier>"

so each case below is a testcase of its own in cc-ci-run's reports, and a
failing case leaves a screenshot of the page in CCCI_ARTIFACTS (kept with
the reports, linked from the timeline page).

What the page must show comes from the environment 40-page.sh sets:
PAGE_URL (the app's page, on 127.0.0.1), EXPECT_VERSION (the version of
the image the app service runs), EXPECT_DATA (what the install tier's
00-deployed.sh stored: the page shows it after the upgrade and after the
restore too, or the data was lost).
"""

import os

import pytest
from playwright.sync_api import Page, expect

# Not a Playwright download: the machine reaches no download site.
CHROMIUM = os.environ.get("CCCI_EXAMPLE_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        # Chromium's sandbox refuses to run as root (a CI host's runner).
        "args": ["--no-sandbox"],
    }


@pytest.fixture
def opened(page: Page) -> Page:
    page.goto(os.environ["PAGE_URL"])
    return page


def test_title(opened: Page):
    expect(opened).to_have_title("ccci-example")


def test_version(opened: Page):
    expect(opened.locator("#version")).to_have_text(
        "ccci-example " + os.environ["EXPECT_VERSION"])


def test_data_written_at_install(opened: Page):
    expect(opened.locator("#data")).to_have_text(os.environ["EXPECT_DATA"])
