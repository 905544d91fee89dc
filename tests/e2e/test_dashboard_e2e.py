"""The dashboard in a real browser (Debian's chromium, driven by Playwright) on `nosgrid up`:
load a key file, get dev NOS, see an invalid definition's errors inline (the same as
`nosgrid job validate`), post a job from the editor, watch its logs arrive and it settle,
see the balance change, then the node's page (alerts subscribed), the ledger explorer
(hash chain verified in the page) and tokenomics; and the pages at a phone's width.

Screenshots go to ``$DASHBOARD_SCREENSHOTS`` (``make screenshots`` sets it to
``docs/dashboard``), else to the test's temporary directory.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Cli, running_up

pytestmark = [pytest.mark.e2e, pytest.mark.container, pytest.mark.browser]
CHROMIUM = "/usr/bin/chromium"
INVALID = '{"version": "0.1", "type": "container", "ops": [{"type": "container/run", ' \
          '"id": "x", "args": {}}]}'
JOB = {
    "version": "0.1", "type": "container",
    "meta": {"nosgrid": {"timeout": 60, "outputs": ["/outputs"]}},
    "ops": [{"type": "container/run", "id": "count", "args": {
        "image": "localhost/nosgrid-busybox:test",
        "cmd": "for i in 1 2 3; do echo \"step $i of 3\"; sleep 1; done; "
               "echo 42 > /outputs/answer.txt; echo done"}}],
}


#: text whose contrast with its background is under WCAG AA's 4.5:1 (disabled controls,
#: which WCAG exempts, left out), as "selector-ish: ratio"
LOW_CONTRAST_JS = """() => {
  const rgb = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => [r, g, b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92
    : ((v + 0.055) / 1.055) ** 2.4; }).reduce((a, v, i) => a + v * [0.2126, 0.7152, 0.0722][i], 0);
  const bg = (el) => { for (; el; el = el.parentElement) { const c = rgb(getComputedStyle(el)
    .backgroundColor); if (c.length === 3 || c[3] > 0) return c; } return [255, 255, 255]; };
  const low = [];
  for (const el of document.querySelectorAll("body *")) {
    if (el.disabled || !el.offsetParent && el.tagName !== "BODY") continue;
    if (![...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
    const a = lum(rgb(getComputedStyle(el).color)), b = lum(bg(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) low.push(el.tagName + "." + el.className + ": " + ratio.toFixed(2));
  }
  return low;
}"""


#: a browser wallet as the Solana wallet standard has one register itself: it answers the
#: page's ``wallet-standard:app-ready`` with ``register(wallet)``, connects with one
#: account, and signs messages (``solana:signMessage``) with its own Ed25519 key
FAKE_WALLET_JS = """(() => {
  const ready = (async () => {
    const kp = await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
    const pub = new Uint8Array(await crypto.subtle.exportKey("raw", kp.publicKey));
    window.__walletPub = pub;
    const account = { address: "", publicKey: pub, chains: ["solana:localnet"],
                      features: ["solana:signMessage"] };
    return { version: "1.0.0", name: "Test Wallet", icon: "data:image/svg+xml,", chains: [],
      accounts: [], features: {
        "standard:connect": { version: "1.0.0", connect: async function () {
          wallet.accounts = [account]; return { accounts: [account] }; } },
        "solana:signMessage": { version: "1.0.0", signMessage: async (...inputs) =>
          Promise.all(inputs.map(async (i) => ({ signedMessage: i.message,
            signature: new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" },
                                                               kp.privateKey, i.message)) }))) },
      } };
  })();
  let wallet = null;
  window.addEventListener("wallet-standard:app-ready", async (e) => {
    wallet = await ready; e.detail.register(wallet);
  });
})();"""


@pytest.fixture
def up(tmp_path: Path) -> Iterator[tuple[str, Cli]]:
    with running_up(tmp_path, 1) as stack:
        yield stack.url, stack.cli


@pytest.fixture
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make system installs it)")
    with sync_api.sync_playwright() as p:
        # root in a VM: chromium's sandbox needs user namespaces, which are off here
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def _shots(tmp_path: Path) -> Path:
    out = Path(os.environ.get("DASHBOARD_SCREENSHOTS") or tmp_path / "shots")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _shot(page: Any, path: Path) -> None:
    """A full-page screenshot, as a 64-colour PNG when Pillow is there (a third the size)."""
    page.screenshot(path=str(path), full_page=True)
    try:
        from PIL import Image
    except ImportError:
        return
    with Image.open(path) as img:
        small = img.convert("RGB").quantize(colors=64)
    small.save(path, optimize=True)


def test_dashboard_in_a_browser(up: tuple[str, Cli], browser: Any, tmp_path: Path) -> None:
    url, cli = up
    shots = _shots(tmp_path)
    me = tmp_path / "me.json"
    pubkey = cli.json("wallet", "new", "--keypair", str(me))["pubkey"]
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))

    # markets: the cpu market with its node online
    page.goto(f"{url}/")
    assert page.evaluate(LOW_CONTRAST_JS) == []
    assert page.locator("#m-cpu").inner_text() == "cpu"
    assert page.locator("[data-figure=online]").inner_text() == "1"
    _shot(page, shots / "markets.png")

    # sign in with the key file; it lives in the tab's memory only
    page.goto(f"{url}/console")
    page.set_input_files("#keyfile", str(me))
    page.wait_for_function(f"document.getElementById('pubkey').textContent === '{pubkey}'")
    assert page.evaluate("Object.keys(localStorage).length + Object.keys(sessionStorage)"
                         ".length") == 0
    page.fill("#faucet-amount", "50")
    page.click("#faucet-btn")
    page.wait_for_function("document.getElementById('balance').textContent === '50'")

    # an invalid definition: the errors `nosgrid job validate` prints, inline
    page.fill("#spec", INVALID)
    page.wait_for_selector("#spec-errors li")
    shown = page.locator("#spec-errors li").all_inner_texts()
    bad = tmp_path / "bad.json"
    bad.write_text(INVALID)
    cli_report = json.loads(cli.run("job", "validate", str(bad), "--json", check=False).stdout)
    assert shown == cli_report[0]["errors"] and shown
    assert page.get_attribute("#spec", "aria-invalid") == "true"
    assert page.is_disabled("#post-btn")
    _shot(page, shots / "console-invalid.png")

    # a valid one: post it, watch its logs arrive and the job settle
    page.fill("#spec", json.dumps(JOB, indent=2))
    page.wait_for_function("!document.getElementById('post-btn').disabled")
    page.click("#post-btn")
    page.wait_for_function("document.getElementById('job-logs').textContent"
                           ".includes('step 1 of 3')", timeout=60_000)
    page.wait_for_function("document.getElementById('job-state').textContent === 'settled'",
                           timeout=90_000)
    page.wait_for_function("document.getElementById('job-audits').textContent"
                           ".includes('No audit run (not verified)')")
    logs = page.locator("#job-logs").inner_text()
    assert "step 3 of 3" in logs and "done" in logs
    job_id = page.locator("#job-id").inner_text()
    status = cli.json("job", "status", job_id, keypair=me)
    assert status["state"] == "settled"
    balance = cli.json("wallet", "balance", keypair=me)["balance_nos"]
    assert balance != "50"
    page.wait_for_function(f"document.getElementById('balance').textContent === '{balance}'")
    assert page.locator("#job-split").inner_text().startswith("Cost")
    assert status["settlement"]["cost_nos"] in page.locator("#job-split").inner_text()
    with page.expect_download() as download:
        page.click("#job-outputs button")
    assert Path(download.value.path()).read_text() == "42\n"
    assert page.evaluate(LOW_CONTRAST_JS) == []
    _shot(page, shots / "job.png")

    # the node's page: the job it ran, its earnings chart, alerts subscribed
    node = httpx.get(f"{url}/v1/nodes").json()["nodes"][0]["id"]
    page.goto(f"{url}/nodes/{node}")
    assert page.locator("[data-figure=jobs-run]").inner_text() == "1"
    from_cli = cli.json("node", "stats", node)  # the same figures for scripts and bots
    assert from_cli["jobs_run"] == 1
    assert page.locator("[data-figure=earned]").inner_text() == (
        f"{from_cli['earned_total_nos']} NOS")
    assert cli.json("market", "stats", "cpu")["finished_1h"] == 1
    assert page.locator("svg.chart rect.bar").count() == 14
    page.click("#alert-form button")
    page.wait_for_selector("#alert-list li")
    assert "subscribed: the node is online" in page.locator("#alert-list").inner_text()
    assert page.evaluate(LOW_CONTRAST_JS) == []
    _shot(page, shots / "node.png")

    # the ledger explorer: the hash chain recomputed in the page
    page.goto(f"{url}/ledger")
    page.wait_for_selector("#browser-check[data-verified]")
    assert page.get_attribute("#browser-check", "data-verified") == "true"
    assert "verified" in page.locator("#browser-check").inner_text()
    assert page.evaluate(LOW_CONTRAST_JS) == []
    _shot(page, shots / "ledger.png")

    page.goto(f"{url}/tokenomics")
    assert page.locator("svg.chart polyline").count() == 1
    assert page.evaluate(LOW_CONTRAST_JS) == []
    _shot(page, shots / "tokenomics.png")

    # keyboard: the first Tab reaches the skip link, which moves focus to the content
    page.goto(f"{url}/")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"

    # a phone's width: nothing wider than the screen
    phone = browser.new_page(viewport={"width": 390, "height": 844})
    for path in ("/", f"/nodes/{node}", "/ledger", "/console"):
        phone.goto(f"{url}{path}")
        assert phone.evaluate("document.documentElement.scrollWidth <= innerWidth + 1"), path
    phone.goto(f"{url}/")
    _shot(phone, shots / "markets-phone.png")
    phone.close()

    # a browser wallet (the Solana wallet standard) signs instead of a key file
    context = browser.new_context()
    context.add_init_script(FAKE_WALLET_JS)
    walleted = context.new_page()
    walleted.goto(f"{url}/console")
    walleted.wait_for_selector("#wallet-btn:not([hidden])")
    assert walleted.locator("#wallet-btn").inner_text() == "Use Test Wallet"
    walleted.click("#wallet-btn")
    walleted.wait_for_function("document.getElementById('pubkey').textContent !== ''")
    wallet_key = walleted.evaluate("nosgrid.b58encode(window.__walletPub)")
    assert walleted.locator("#pubkey").inner_text() == wallet_key
    walleted.fill("#faucet-amount", "5")
    walleted.click("#faucet-btn")  # a signed POST: the coordinator verified the wallet's
    walleted.wait_for_function("document.getElementById('balance').textContent === '5'")
    context.close()
    assert problems == []


def test_chromium_is_debians() -> None:
    """The browser tests never download a browser: they drive the system's chromium."""
    if shutil.which("chromium") is None:
        pytest.skip("chromium is not installed")
    assert Path(CHROMIUM).resolve().is_file()
