"""The web page (``serving/static/index.html``) in a real headless Chromium against a real
``memrec serve`` of a tiny RUM-F: it loads a user from ``?user=``, draws the memory heatmap with
the selected recommendation's attention, shows an API error in the status line, and an added
event changes the memory, the scores and ``events seen``.

``MEMREC_SCREENSHOT=1`` also saves ``docs/serving.png`` (1200x900)."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT_S = 30
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "serving.png"

pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
    reason="chromium/chromedriver not installed (Debian packages chromium, chromium-driver; "
           ".ci/run installs them)")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny RUM-F saved where ``memrec serve`` reads it, and its training data."""
    from memrec.data.synthetic import SynthConfig, generate
    from memrec.recommender import Recommender

    data = generate(SynthConfig(n_users=200, n_items=300, mean_length=15, seed=7))
    run_dir = tmp_path_factory.mktemp("web-run")
    Recommender("rumf", dim=16, train={"epochs": 1}).fit(data).save(run_dir)
    return run_dir, data


@pytest.fixture(scope="module")
def base_url(trained):
    from .serving_helpers import serving

    with serving(trained[0]) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1200,900", "--disable-gpu", "--no-first-run"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        driver.set_page_load_timeout(WAIT_S)
        driver.set_script_timeout(WAIT_S)
        yield driver
    finally:
        driver.quit()


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.load(resp)


def _page(driver) -> dict:
    """What the page shows now, read in one script."""
    return driver.execute_script("""
        const q = (s) => Array.from(document.querySelectorAll(s));
        return {
          loads: Number(document.body.dataset.loads),
          items: q('#recommendations li[data-item]').map((li) => li.dataset.item),
          scores: q('#recommendations li[data-item]').map((li) => Number(li.dataset.score)),
          selected: q('#recommendations li.selected').map((li) => li.dataset.item),
          labels: q('#memory tbody tr').map((tr) => tr.dataset.label),
          memory: q('#memory td[data-value]').map((td) => Number(td.dataset.value)),
          attention: q('#memory td[data-attention]').map((td) => td.closest('tr').dataset.label),
          attFor: document.getElementById('att-for').textContent,
          eventsSeen: document.getElementById('events-seen').textContent,
          model: document.getElementById('model-name').textContent,
          checkpoint: document.getElementById('checkpoint').textContent,
          status: document.getElementById('status').textContent,
          statusKind: document.getElementById('status').dataset.kind || '',
        };""")


def _slot(label: str) -> str:
    return label.removeprefix("slot ")


def _wait(driver, condition, what: str):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, WAIT_S, poll_frequency=0.1).until(lambda d: condition(_page(d)))
    except TimeoutException:
        pytest.fail(f"timed out after {WAIT_S} s waiting for {what}; the page shows {_page(driver)!r}")


def test_page_loads_a_user_and_an_event_changes_the_memory(trained, base_url, browser):
    from selenium.webdriver.common.by import By

    _, data = trained
    user = str(data.users.to_raw([3])[0])
    seen = {str(i) for i in data.items.to_raw(data.item[data.user == 3])}
    health = _get_json(base_url + "/healthz")

    browser.get(f"{base_url}/?user={user}&k=10")
    _wait(browser, lambda p: p["loads"] >= 1 and p["items"] and p["memory"],
          "the user's recommendations and memory")
    before = _page(browser)
    assert before["statusKind"] == "ok", before["status"]
    assert browser.find_element(By.ID, "user").get_attribute("value") == user
    assert before["model"] == health["model"] == "rumf"
    assert before["checkpoint"] == health["checkpoint"][:12]
    assert len(before["items"]) == 10 and not set(before["items"]) & seen
    assert before["scores"] == sorted(before["scores"], reverse=True)
    # RUM-F's memory: 20 slots (rows labelled "N" or "slot N") x 16 dims; the first
    # recommendation is selected and its explanation's slot ids ("N") light up their rows
    api = _get_json(f"{base_url}/v1/users/{user}/recommendations?k=10&explain=true")
    explained = {e["id"] for e in api["items"][0]["explanation"]}
    assert before["selected"] == [before["items"][0]] == [api["items"][0]["item"]]
    assert [_slot(label) for label in before["labels"]] == [str(k) for k in range(20)]
    assert len(before["memory"]) == 20 * 16 and np.isfinite(before["memory"]).all()
    assert {_slot(label) for label in before["attention"]} == explained

    # selecting another recommendation moves the attention column to its explanation
    second = before["items"][1]
    browser.find_element(By.CSS_SELECTOR, f'#recommendations li[data-item="{second}"]').click()
    page = _wait(browser, lambda p: p["selected"] == [second] and second in p["attFor"] and p,
                 "the second recommendation to be selected")
    explained = {e["id"] for e in api["items"][1]["explanation"]}
    assert {_slot(label) for label in page["attention"]} == explained

    # an unknown item: the API's error shows in the status line, nothing is reloaded
    item_input = browser.find_element(By.ID, "event-item")
    item_input.send_keys("no-such-item")
    browser.find_element(By.ID, "add-event").click()
    page = _wait(browser, lambda p: p["statusKind"] == "error" and p, "an error in #status")
    assert page["status"].startswith("add event: 4"), page["status"]
    assert page["loads"] == before["loads"] and page["memory"] == before["memory"]

    # a catalogue item neither recommended nor seen: the memory writes it
    item = next(str(i) for i in data.items.to_raw(np.arange(data.n_items))
                if str(i) not in seen and str(i) not in before["items"])
    item_input.clear()
    item_input.send_keys(item)
    browser.find_element(By.ID, "add-event").click()
    after = _wait(browser, lambda p: p["loads"] > before["loads"] and p, "the reload after the event")
    assert after["statusKind"] == "ok", after["status"]
    assert item in after["status"]
    assert int(after["eventsSeen"]) == int(before["eventsSeen"]) + 1
    assert len(after["memory"]) == len(before["memory"]) and after["memory"] != before["memory"]
    assert list(zip(after["items"], after["scores"])) != list(zip(before["items"], before["scores"]))
    assert item not in after["items"]                     # seen now, and seen items are excluded
    assert after["selected"] == [second] or after["selected"] == after["items"][:1]

    if os.environ.get("MEMREC_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(exist_ok=True)
        assert browser.get_screenshot_as_file(str(SCREENSHOT)), "screenshot failed"

    # the picker offers known users
    assert browser.execute_script("return document.querySelectorAll('#user-list option').length") > 0

    # a user the service has never seen: cold-start recommendations, no memory and no error;
    # after one event, a memory whose rows have no vectors (one cell each)
    user_input = browser.find_element(By.ID, "user")
    user_input.clear()
    user_input.send_keys("web-page-new-user")
    browser.find_element(By.ID, "load").click()
    fresh = _wait(browser, lambda p: p["loads"] > after["loads"] and p, "the new user's load")
    assert fresh["statusKind"] == "ok", fresh["status"]
    assert fresh["items"] and not fresh["labels"] and fresh["eventsSeen"] == "0"
    assert browser.find_element(By.ID, "cold-start").text == "yes"
    assert "new user" in browser.find_element(By.ID, "memory").text
    item_input.send_keys(item)
    browser.find_element(By.ID, "add-event").click()
    wrote = _wait(browser, lambda p: p["loads"] > fresh["loads"] and p, "the new user's reload")
    assert wrote["statusKind"] == "ok" and wrote["eventsSeen"] == "1", wrote["status"]
    assert wrote["labels"]
    if not wrote["memory"]:                    # rows without vectors: one wide cell per row
        assert wrote["labels"] == [item]
        assert browser.execute_script("return document.querySelectorAll('#memory td.items').length") == 1



def test_page_sends_the_bearer_token(trained, tmp_path, browser):
    """A service whose reads and writes need a token: the page shows the 401, then works once
    the token is typed (it goes with every request, and is kept nowhere)."""
    from selenium.webdriver.common.by import By

    from .serving_helpers import serving

    run_dir, data = trained
    user = str(data.users.to_raw([5])[0])
    with serving(run_dir, store_url=f"sqlite:///{tmp_path / 'state.db'}",
                 env={"MEMREC_TOKEN": "s3cret-token"}, extra_args=["--read-token"]) as url:
        browser.get(f"{url}/?user={user}&k=7")
        page = _wait(browser, lambda p: p["loads"] >= 1 and p, "the first load")
        assert page["statusKind"] == "error" and "401" in page["status"], page["status"]
        assert not page["items"] and not page["memory"]

        browser.find_element(By.ID, "token").send_keys("s3cret-token")
        browser.find_element(By.ID, "load").click()
        page = _wait(browser, lambda p: p["loads"] >= 2 and p, "the load with the token")
        assert page["statusKind"] == "ok" and page["memory"], page["status"]
        assert len(page["items"]) == 7                      # ?k= not among the select's choices

        item = next(str(i) for i in data.items.to_raw(np.arange(data.n_items)) if str(i) not in page["items"])
        browser.find_element(By.ID, "event-item").send_keys(item)
        browser.find_element(By.ID, "add-event").click()
        after = _wait(browser, lambda p: p["loads"] >= 3 and p, "the reload after the event")
        assert after["statusKind"] == "ok", after["status"]
        assert int(after["eventsSeen"]) == int(page["eventsSeen"]) + 1
        assert not browser.execute_script("return localStorage.length + sessionStorage.length")
