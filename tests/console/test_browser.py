"""End to end: a real headless Chromium (Debian's chromium + chromium-driver, nothing downloaded)
drives the console served by a real `kms serve` process.

One browser session, the main flows in order.  Set KMS_CONSOLE_SCREENSHOTS=DIR to save
screenshots of the main pages (docs/img/ is made this way).
"""
from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from selenium import webdriver  # a test dependency: missing means failing, never skipping
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from kms_core.server.credentials import AccessKeys
from kms_core.settings import Settings
from kms_core.store import Store

CHROMEDRIVER = "/usr/bin/chromedriver"
ACCOUNT = "111122223333"
pytestmark = pytest.mark.slow


def _port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`kms serve` on a fresh store, with access keys for alice and bob."""
    home = tmp_path_factory.mktemp("console-home")
    env = {**os.environ, "KMS_HOME": str(home), "KMS_ROOT_KEY": base64.b64encode(os.urandom(32)).decode(),
           "KMS_ACCOUNT_ID": ACCOUNT, "KMS_REGION": "us-east-1"}
    for var in ("KMS_STORE_URL", "KMS_ROOT_KEY_FILE", "KMS_SERVER_CONFIG"):
        env.pop(var, None)
    settings = Settings.from_env(home=home, root_key=base64.b64decode(env["KMS_ROOT_KEY"]),
                                 account_id=ACCOUNT, region="us-east-1")
    store = Store(settings)
    keys = AccessKeys(store, ACCOUNT)
    alice, bob = keys.create("alice")["AccessKey"], keys.create("bob")["AccessKey"]
    store.dispose()
    port = _port()
    log = open(home / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "kms_core.server", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "1"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(home))
    url = f"http://localhost:{port}"  # "localhost" is a secure context: Chromium keeps Secure cookies
    deadline = time.monotonic() + 40
    while True:
        try:
            urllib.request.urlopen(url + "/health", timeout=1).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("kms serve did not start:\n" + (home / "server.log").read_text())
            time.sleep(0.1)
    yield {"url": url, "alice": alice, "bob": bob, "log": home / "server.log"}
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def browser():
    if not (shutil.which("chromium") and os.path.exists(CHROMEDRIVER)):
        pytest.fail("chromium and chromium-driver are required (apt-get install chromium chromium-driver)")
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not download anything
    profile = tempfile.mkdtemp(prefix="kms-console-chromium-")
    opts = Options()
    opts.binary_location = shutil.which("chromium") or "chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", f"--user-data-dir={profile}", "--window-size=1280,900"):
        opts.add_argument(flag)
    drv = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    drv.implicitly_wait(2)
    yield drv
    drv.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _gone(element):
    """The old page is gone.  Besides "stale element", chromedriver can answer "node does not
    belong to the document" while the next page loads: both mean the same."""
    def check(_driver) -> bool:
        try:
            element.is_enabled()
        except WebDriverException:  # StaleElementReferenceException is one
            return True
        return False
    return check


class UI:
    def __init__(self, drv, url: str):
        self.d, self.url = drv, url
        shots = os.environ.get("KMS_CONSOLE_SCREENSHOTS")
        self.shots = Path(shots) if shots else None

    def go(self, path: str) -> None:
        self.d.get(self.url + "/console" + path)

    def css(self, sel: str):
        return self.d.find_element(By.CSS_SELECTOR, sel)

    def fill(self, sel: str, text: str) -> None:
        el = self.css(sel)
        el.clear()
        el.send_keys(text)

    def click(self, text: str) -> None:
        """Click a button or link (each one loads a page) and wait for the next page."""
        old = self.css("html")
        self.d.find_element(By.XPATH, f"//button[normalize-space()='{text}'] | //a[normalize-space()='{text}']").click()
        WebDriverWait(self.d, 10).until(_gone(old))
        WebDriverWait(self.d, 10).until(lambda d: d.execute_script("return document.readyState") == "complete")

    def flash(self) -> str:
        return self.css(".flash").text

    def body(self) -> str:
        return self.css("body").text

    def shot(self, name: str, width: int = 1280) -> None:
        if self.shots is None:
            return
        self.shots.mkdir(parents=True, exist_ok=True)
        self.d.set_window_size(width, 900)
        self.d.execute_script("window.scrollTo(0, 0)")
        self.d.save_screenshot(str(self.shots / f"{name}.png"))
        self.d.set_window_size(1280, 900)

    def sign_in(self, key: dict) -> None:
        self.go("/signin")
        self.fill("#access_key_id", key["AccessKeyId"])
        self.fill("#secret_access_key", key["SecretAccessKey"])
        self.click("Sign in")
        assert "Customer managed keys" in self.css("h1").text

    def sign_out(self) -> None:
        self.click("Sign out")
        assert "Sign in to the KMS console" in self.css("h1").text


def test_console_end_to_end(served, browser):
    ui = UI(browser, served["url"])
    alice = f"arn:aws:iam::{ACCOUNT}:user/alice"
    ui.go("/keys")
    assert "Sign in to the KMS console" in ui.css("h1").text  # no session: the sign-in page
    ui.shot("signin", 900)
    ui.sign_in(served["alice"])

    # Create key: three steps and the review.
    ui.click("Create key")
    Select(ui.css("#key_spec")).select_by_value("SYMMETRIC_DEFAULT")
    ui.fill("#alias", "e2e-app")
    ui.fill("#description", "Made by the browser test")
    ui.fill("#tag_key_0", "team")
    ui.fill("#tag_value_0", "payments")
    ui.shot("create-step1")
    ui.click("Next")
    ui.css(f"input[name=admins][value='{alice}']").click()
    ui.css("#account_access").click()  # only the chosen principals
    ui.click("Next")
    ui.css(f"input[name=users][value='{alice}']").click()
    ui.click("Next")
    policy = ui.css("#policy").get_attribute("value")
    assert "Allow access for Key Administrators" in policy and "Enable IAM User Permissions" not in policy
    ui.shot("create-review")
    ui.click("Finish")
    assert "Your KMS key was created with alias alias/e2e-app" in ui.flash()
    key_url = browser.current_url.split("?")[0]
    key_id = key_url.rsplit("/", 1)[1]

    # In the list, found by search.
    ui.go("/keys")
    ui.fill("#q", "e2e-app")
    ui.click("Search")
    row = ui.css("table.grid tbody tr").text
    assert "alias/e2e-app" in row and key_id in row and "Enabled" in row and "SYMMETRIC_DEFAULT" in row
    ui.shot("keys")

    # Disable and re-enable.
    browser.get(key_url)
    ui.click("Disable")
    assert ui.css("#key-state").text == "Disabled"
    ui.click("Enable")
    assert ui.css("#key-state").text == "Enabled"
    ui.shot("key-detail")

    # Rotation: on, then rotate now; the history shows it.
    browser.get(key_url + "?tab=rotation")
    ui.fill("#period", "180")
    ui.click("Enable automatic rotation")
    assert ui.css("#rotation-status").text == "Enabled"
    ui.click("Rotate now")
    assert "On-demand rotation" in ui.flash()
    assert "ON_DEMAND" in ui.body()

    # Alias, tag, grant.
    browser.get(key_url + "?tab=aliases")
    ui.fill("#alias", "e2e-second")
    ui.click("Add alias")
    assert "alias/e2e-second" in ui.body()
    browser.get(key_url + "?tab=tags")
    ui.fill("#tag_key", "env")
    ui.fill("#tag_value", "test")
    ui.click("Add tag")
    assert "env" in ui.css("table.grid").text
    browser.get(key_url + "?tab=grants")
    ui.fill("#grantee", f"arn:aws:iam::{ACCOUNT}:user/bob")
    ui.css("#op-Decrypt").click()
    ui.fill("#grant-name", "e2e-grant")
    ui.click("Create grant")
    assert "Grant created" in ui.flash() and "e2e-grant" in ui.css("table.grid").text

    # Policy: a validation error in place, then a good edit.
    browser.get(key_url + "?tab=policy&view=json")
    good = ui.css("#policy").get_attribute("value")
    ui.fill("#policy", good.replace('"Statement"', '"Statement" oops'))
    ui.click("Save changes")
    err = ui.css("#policy-error").text
    assert "MalformedPolicyDocumentException" in err and "line" in err
    assert ui.css("#policy").get_attribute("aria-invalid") == "true"
    ui.shot("policy-error")
    ui.fill("#policy", good.replace("key-consolepolicy-3", "key-consolepolicy-e2e"))
    ui.click("Save changes")
    assert "Key policy saved" in ui.flash()

    # Encrypt panel.
    browser.get(key_url + "?tab=use")
    ui.fill("#plaintext", "hello from the browser")
    ui.click("Encrypt")
    assert ui.css("#result-ct").get_attribute("value")
    ui.shot("encrypt")

    # Schedule deletion, then cancel it.
    browser.get(key_url)
    ui.fill("#days", "7")
    ui.css("#confirm").click()
    ui.click("Schedule deletion")
    assert ui.css("#key-state").text == "PendingDeletion"
    ui.click("Cancel key deletion")
    assert ui.css("#key-state").text == "Disabled"

    # Every step is in the audit trail, as alice.
    ui.go(f"/audit?key={key_id}&limit=100")
    assert "Verified" in ui.css(".verified").text
    events = ui.css("table.events").text
    for name in ("CreateKey", "DisableKey", "EnableKey", "EnableKeyRotation", "RotateKeyOnDemand", "CreateAlias",
                 "TagResource", "CreateGrant", "PutKeyPolicy", "ScheduleKeyDeletion", "CancelKeyDeletion",
                 "Encrypt"):
        assert name in events, name
    assert alice in events
    ui.go("/audit?operation=PutKeyPolicy&principal=alice")
    assert "PutKeyPolicy" in ui.css("table.events").text
    ui.shot("audit")
    ui.shot("audit-narrow", 420)

    # Bob is not in the key policy: AWS's AccessDeniedException, in the page.
    ui.sign_out()
    ui.sign_in(served["bob"])
    browser.get(key_url)
    text = ui.body()
    assert "AccessDeniedException" in text
    assert (f"User: arn:aws:iam::{ACCOUNT}:user/bob is not authorized to perform: kms:DescribeKey on resource: "
            f"arn:aws:kms:us-east-1:{ACCOUNT}:key/{key_id}") in text
    ui.shot("access-denied", 900)
    ui.sign_out()
    assert "hello from the browser" not in served["log"].read_text()


def test_browser_present():
    """CI installs chromium and chromium-driver (.ci/run): fail loudly, never skip, when they are missing."""
    assert shutil.which("chromium") and os.path.exists(CHROMEDRIVER)
    try:
        subprocess.run([CHROMEDRIVER, "--version"], check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError, WebDriverException) as e:
        pytest.fail(f"chromedriver does not run: {e}")
