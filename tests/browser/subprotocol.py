"""Opens WebSockets from a page in Debian's Chromium (headless) offering
subprotocols, as `new WebSocket(url, ["mqtt", "superchat"])` does, and
prints what each became: `open PROTOCOL [EXTENSIONS]` or `failed`.

Usage: python subprotocol.py BASE_URL PATH:P1,P2 [PATH:P1,P2 ...]
"""
import os
import sys

from playwright.sync_api import sync_playwright

base = sys.argv[1]
args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
OPEN = """([url, offers]) => new Promise(resolve => {
    const ws = new WebSocket(url, offers);
    ws.onopen = () => {
        resolve("open " + ws.protocol + (ws.extensions ? " [" + ws.extensions + "]" : ""));
        ws.close();
    };
    ws.onerror = () => resolve("failed");
})"""
with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"), args=args)
    try:
        page = browser.new_page()
        page.goto(base + "/")
        ws_base = base.replace("http://", "ws://", 1)
        for case in sys.argv[2:]:
            path, offers = case.split(":", 1)
            got = page.evaluate(OPEN, [ws_base + path, offers.split(",")])
            print(f"{path} {got}")
    finally:
        browser.close()
