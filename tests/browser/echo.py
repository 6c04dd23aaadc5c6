"""Opens the demo page in Debian's Chromium (headless; Playwright's own
browser is never downloaded), sends a message over the page's WebSocket and
waits for the echo, and says which protocol loaded the page (over https,
h2; the WebSocket itself stays on HTTP/1.1). Python's playwright carries its driver in its wheel, so
this needs no Node.js of the machine's.

Usage: python echo.py BASE_URL SCREENSHOT.png
"""
import os
import sys
import time

from playwright.sync_api import sync_playwright

base, shot = sys.argv[1], sys.argv[2]
args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"), args=args)
    try:
        # A self-signed certificate over https (the test's own server).
        page = browser.new_page(ignore_https_errors=True)
        page.goto(base + "/ws.html")
        # h2 over TLS by ALPN, http/1.1 in plain text.
        print("protocol: " + page.evaluate(
            "performance.getEntriesByType('navigation')[0].nextHopProtocol"))
        page.wait_for_selector("#status:text('open')", timeout=10000)
        text = "echo from chromium %d" % int(time.time() * 1000)
        page.fill("#text", text)
        page.click("#send")
        page.wait_for_function("t => document.getElementById('echo').textContent === t", arg=text, timeout=10000)
        page.screenshot(path=shot)
        print("echoed: " + page.text_content("#echo"))
        print("browser: " + browser.version)
    finally:
        browser.close()
