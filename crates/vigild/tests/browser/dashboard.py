#!/usr/bin/python3
"""Drives Vigil's dashboard in a real headless Chromium (Debian's chromium and
chromium-driver, through python3-selenium). Run by crates/vigild/tests/dashboard_browser.rs,
which starts `vigil run` with the TCP listener, checks the ledger afterwards and gives:

  --url        the dashboard (http://127.0.0.1:PORT/)
  --token      the bearer token of http_token_file
  --ok-file    the file the `web` service's exec check tests (removed here: the check fails)
  --artifacts  where the screenshots go (and, on a failure, the page's DOM, text and
               console log)
  --vigil, --config
               the `vigil` binary and the daemon's config: an operator's `vigil stop` of
               `batch` on the control socket, which the page must show live as a hold

Without a token the page is read-only (no operator button in the DOM); the check's flip to
failing, the health restart it causes and the given-up service are seen live, without a
reload; with the token pasted in, the buttons appear and act. Prints one JSON line of what
it saw; any failure is an exception (exit 1) with the page's state."""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

WAIT = 30  # seconds for anything the daemon does (checks run every second)

# Every visible element with text of its own whose contrast with what is behind it is below
# WCAG AA: 4.5:1, or 3:1 for large text (24 px, or 18.66 px bold). The background is the
# element's and its ancestors' background colours composited; text in an image or over a
# gradient is not judged (the page has none).
LOW_CONTRAST_JS = """
const parse = (s) => {
  const m = /rgba?\\(([^)]+)\\)/.exec(s);
  if (!m) return null;
  const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
  return { rgb: p.slice(0, 3), a: p.length > 3 ? p[3] : 1 };
};
const lum = (rgb) => {
  const [r, g, b] = rgb.map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
};
const behind = (el) => {
  const layers = [];
  for (let e = el; e; e = e.parentElement) {
    const c = parse(getComputedStyle(e).backgroundColor);
    if (c && c.a > 0) { layers.push(c); if (c.a >= 1) break; }
  }
  let rgb = [255, 255, 255];
  for (const l of layers.reverse()) rgb = rgb.map((v, i) => l.rgb[i] * l.a + v * (1 - l.a));
  return rgb;
};
const low = [];
let judged = 0;
for (const el of document.querySelectorAll('body *')) {
  if (!el.getClientRects().length) continue;
  if (![...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
  const cs = getComputedStyle(el);
  if (cs.visibility === 'hidden' || cs.clip === 'rect(0px, 0px, 0px, 0px)') continue;
  const fg = parse(cs.color);
  if (!fg) continue;
  const bg = behind(el);
  const f = fg.rgb.map((v, i) => v * fg.a + bg[i] * (1 - fg.a));
  const [hi, lo] = [lum(f), lum(bg)].sort((a, b) => b - a);
  const ratio = (hi + 0.05) / (lo + 0.05);
  const size = parseFloat(cs.fontSize);
  const large = size >= 24 || (size >= 18.66 && parseInt(cs.fontWeight, 10) >= 700);
  judged += 1;
  if (ratio < (large ? 3 : 4.5)) {
    low.push({ text: el.textContent.trim().slice(0, 40), ratio: ratio.toFixed(2), color: cs.color, behind: 'rgb(' + bg.map(Math.round) + ')' });
  }
}
return { judged, low };
"""


def browser(profile):
    opts = webdriver.ChromeOptions()
    opts.binary_location = os.environ.get("VIGIL_TEST_CHROMIUM", "/usr/bin/chromium")
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--window-size=1280,1000",
        # A fresh profile. Its path must be canonical: given one with `..`, chromedriver
        # cannot find the DevToolsActivePort file Chromium writes there.
        "--user-data-dir=" + profile,
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=os.environ.get("VIGIL_TEST_CHROMEDRIVER", "/usr/bin/chromedriver"))
    return webdriver.Chrome(service=service, options=opts)


class Page:
    def __init__(self, driver):
        self.d = driver

    def wait(self, what, cond, timeout=WAIT):
        def safe(d):
            try:
                return cond(d)
            except StaleElementReferenceException:
                return False

        try:
            return WebDriverWait(self.d, timeout, poll_frequency=0.1).until(safe)
        except TimeoutException:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n--- page text:\n{self.text()}")

    def text(self):
        try:
            return self.d.find_element(By.TAG_NAME, "body").text
        except Exception as e:  # noqa: BLE001 - for a failure message only
            return f"(no page text: {e})"

    def row(self, service):
        return self.d.find_element(By.CSS_SELECTOR, f'#service-rows tr[data-service="{service}"]')

    def cell(self, service, field):
        return self.row(service).find_element(By.CSS_SELECTOR, f'td[data-field="{field}"]')

    def buttons(self):
        return self.d.find_elements(By.CSS_SELECTOR, "button[data-action]")

    def result(self):
        return self.d.find_element(By.ID, "result").text

    def ledger_rows(self, service, source):
        return self.d.find_elements(
            By.CSS_SELECTOR, f'#ledger-rows tr[data-service="{service}"][data-source="{source}"]'
        )

    def paste_token(self, token):
        field = self.d.find_element(By.ID, "token")
        field.clear()
        field.send_keys(token)
        field.send_keys(Keys.ENTER)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--ok-file", required=True)
    ap.add_argument("--artifacts", required=True)
    ap.add_argument("--vigil", required=True)
    ap.add_argument("--config", required=True)
    args = ap.parse_args()
    args.artifacts = os.path.realpath(args.artifacts)
    os.makedirs(args.artifacts, exist_ok=True)
    seen = {}

    profile = os.path.realpath(tempfile.mkdtemp(prefix="vigil-chromium-"))
    try:
        d = browser(profile)
    except Exception:
        shutil.rmtree(profile, ignore_errors=True)
        raise
    try:
        p = Page(d)
        d.get(args.url)
        # A marker that a reload would erase: every change below must arrive live.
        d.execute_script("window.__vigilNoReload = 'still here';")
        p.wait("the live feed", lambda d: d.find_element(By.ID, "conn").text == "Live")
        p.wait("the service rows", lambda d: len(d.find_elements(By.CSS_SELECTOR, "#service-rows tr[data-service]")) == 5)
        seen["rows"] = [r.get_attribute("data-service") for r in d.find_elements(By.CSS_SELECTOR, "#service-rows tr")]

        # The first load as the browser counted it: everything from this origin, and the
        # document and its files under 150 KB on the wire (the live feed aside: it never ends).
        origin = d.execute_script("return location.origin")
        loads = d.execute_script(
            "return performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))"
            ".map(e => ({name: e.name, size: e.transferSize}))"
        )
        foreign = [e["name"] for e in loads if not e["name"].startswith(origin + "/")]
        assert not foreign, f"loaded from another origin: {foreign}"
        first_load = sum(e["size"] for e in loads if "/v1/" not in e["name"])
        assert 0 < first_load < 150 * 1024, f"first load {first_load} bytes: {loads}"
        seen["first_load_bytes"] = first_load

        # Landmarks and labels.
        for sel in ("header", "main", "aside", "footer", "label[for=token]", "[aria-live]", "#conn[role=status]"):
            assert d.find_elements(By.CSS_SELECTOR, sel), f"no {sel}"

        # Read-only without a token: the buttons are not in the page at all.
        assert p.buttons() == [], "operator buttons without a token"
        assert d.find_element(By.ID, "token-form").is_displayed(), "no token form"
        assert not d.find_element(By.ID, "actions-heading").is_displayed()

        # The passing check, then its flip to failing and the health restart it causes.
        p.wait("web ok", lambda d: p.row("web").get_attribute("data-state") == "ok")
        assert p.cell("web", "restarts").find_element(By.CSS_SELECTOR, "[data-field=restart-count]").text == "0/5"
        os.remove(args.ok_file)
        p.wait("web failing", lambda d: p.row("web").get_attribute("data-state") == "failing")
        p.wait(
            "web's restart count to become 1/5",
            lambda d: p.cell("web", "restarts").find_element(By.CSS_SELECTOR, "[data-field=restart-count]").text == "1/5",
        )
        checks = p.cell("web", "checks").text
        assert "failing" in checks, checks
        p.wait("the health restart in the ledger table", lambda d: p.ledger_rows("web", "health"))
        seen["web_checks"] = checks
        seen["web_timers"] = p.cell("web", "timers").text
        assert "cooldown" in seen["web_timers"], seen["web_timers"]

        # The given-up service: at the top, in red, with when it re-arms.
        p.wait("the given-up banner", lambda d: d.find_element(By.ID, "given-up").is_displayed())
        banner = d.find_element(By.ID, "given-up").text
        assert "flaky" in banner and "re-arms" in banner, banner
        first = d.find_element(By.CSS_SELECTOR, "#service-rows tr")
        assert first.get_attribute("data-service") == "flaky", first.get_attribute("data-service")
        assert "is-given-up" in first.get_attribute("class")
        seen["given_up"] = banner

        # The exec service: pid, uptime and its STATUS= text.
        p.wait("worker's STATUS= text", lambda d: "serving 3 jobs" in p.cell("worker", "process").text)
        process = p.cell("worker", "process").text
        assert "pid " in process and "up " in process, process
        seen["worker_process"] = process
        # api: the next scheduled restart and the next maintenance window.
        timers = p.cell("api", "timers").text
        assert "next restart" in timers and "maintenance" in timers and "for 30m" in timers, timers
        seen["api_timers"] = timers

        # An operator's stop on the control socket (another channel than this page): the
        # hold shows up live, with who and why, and the stop/start column is not needed.
        p.wait("batch ok", lambda d: p.row("batch").get_attribute("data-state") == "ok")
        subprocess.run(
            [args.vigil, "stop", "batch", "--reason", "disk swap", "--for", "2h", "-c", args.config],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            timeout=WAIT,
        )
        p.wait("batch stopped", lambda d: p.row("batch").get_attribute("data-state") == "stopped")
        held = p.cell("batch", "state").text
        assert "stopped by " in held and "(operator)" in held and "disk swap" in held and "until" in held, held
        seen["batch_stopped"] = held

        d.save_screenshot(os.path.join(args.artifacts, "dashboard.png"))

        # Contrast, in both colour schemes, over everything the page shows now (badges of
        # every state, the given-up row, holds, muted text).
        for scheme in ("light", "dark"):
            d.execute_cdp_cmd(
                "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": scheme}]}
            )
            contrast = d.execute_script(LOW_CONTRAST_JS)
            assert contrast["judged"] > 50, contrast
            assert not contrast["low"], f"{scheme}: text below WCAG AA contrast: {contrast['low']}"
            seen[f"contrast_{scheme}"] = f"{contrast['judged']} text elements at AA or better"
            if scheme == "dark":
                d.save_screenshot(os.path.join(args.artifacts, "dashboard-dark.png"))
        d.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "light"}]})

        # A wrong token is refused and stored nowhere.
        p.paste_token(args.token + "-wrong")
        p.wait("the refusal", lambda d: "refused" in p.result())
        assert p.buttons() == []
        assert d.execute_script("return sessionStorage.getItem('vigil.token')") is None

        # The right one: the buttons appear; restart api by clicking.
        p.paste_token(args.token)
        p.wait("the restart button", lambda d: d.find_elements(By.CSS_SELECTOR, 'button[aria-label="Restart api"]'))
        assert d.execute_script("return sessionStorage.getItem('vigil.token')") == args.token
        assert d.execute_script("return document.cookie") == "", "a cookie was set"
        assert args.token not in d.current_url
        d.find_element(By.CSS_SELECTOR, 'button[aria-label="Restart api"]').click()
        p.wait("the restart's answer", lambda d: "ALLOWED" in p.result())
        seen["restart_result"] = p.result()
        p.wait("the manual restart in the ledger table", lambda d: p.ledger_rows("api", "manual"))
        p.wait(
            "api's restart count to become 1/5",
            lambda d: p.cell("api", "restarts").find_element(By.CSS_SELECTOR, "[data-field=restart-count]").text == "1/5",
        )

        # Keyboard only: pause api with a reason (Tab to the button, Enter), then resume.
        d.find_element(By.ID, "reason").send_keys("browser test")
        pause = d.find_element(By.CSS_SELECTOR, 'button[aria-label="Pause api"]')
        d.execute_script("arguments[0].focus()", pause)
        d.switch_to.active_element.send_keys(Keys.ENTER)
        p.wait("api paused", lambda d: p.row("api").get_attribute("data-state") == "paused")
        state = p.cell("api", "state").text
        assert "paused by token from 127.0.0.1:" in state and "browser test" in state, state
        seen["api_paused"] = state
        # The same button, relabelled in place, kept the focus.
        focused = d.switch_to.active_element
        assert focused.get_attribute("aria-label") == "Resume api", focused.get_attribute("aria-label")
        focused.send_keys(Keys.ENTER)
        p.wait("api resumed", lambda d: p.row("api").get_attribute("data-state") != "paused")

        # A phone: the tables become cards, nothing is wider than the screen.
        d.set_window_size(390, 844)
        p.wait("the narrow layout", lambda d: d.execute_script("return window.innerWidth") <= 400)
        overflow = d.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{overflow}px wider than the screen"
        d.save_screenshot(os.path.join(args.artifacts, "dashboard-phone.png"))

        assert d.execute_script("return window.__vigilNoReload") == "still here", "the page was reloaded"
        # No CSP violation, script error or failed load in the console.
        # (The wrong token's 401 from /v1/whoami is the one expected.)
        errors = [
            e
            for e in d.get_log("browser")
            if e.get("level") == "SEVERE" and not ("/v1/whoami" in e.get("message", "") and "401" in e.get("message", ""))
        ]
        assert not errors, f"console errors: {errors}"
        seen["ok"] = True
        print(json.dumps(seen))
    except Exception:
        save_failure(d, args.artifacts)
        raise
    finally:
        d.quit()
        shutil.rmtree(profile, ignore_errors=True)


def save_failure(d, artifacts):
    """What the page looked like when a step failed: a screenshot, the DOM, its text and
    the browser's console, in the artifacts directory (each attempted on its own)."""
    steps = (
        ("dashboard-failure.png", lambda: d.save_screenshot(os.path.join(artifacts, "dashboard-failure.png"))),
        ("dashboard-failure.html", lambda: write(artifacts, "dashboard-failure.html", d.page_source)),
        ("dashboard-failure.txt", lambda: write(artifacts, "dashboard-failure.txt", Page(d).text())),
        (
            "dashboard-console.log",
            lambda: write(
                artifacts,
                "dashboard-console.log",
                "".join(f"{e.get('level')} {e.get('source')} {e.get('message')}\n" for e in d.get_log("browser")),
            ),
        ),
    )
    for name, step in steps:
        try:
            step()
            print(f"saved {os.path.join(artifacts, name)}", file=sys.stderr)
        except Exception as e:  # noqa: BLE001 - the original failure matters more
            print(f"could not save {name}: {e}", file=sys.stderr)


def write(directory, name, text):
    with open(os.path.join(directory, name), "w", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    main()
