// Opens the demo page in Debian's Chromium (headless, no downloaded browser),
// sends a message over the page's WebSocket and waits for the echo.
// Usage: node echo.mjs BASE_URL SCREENSHOT.png
import { chromium } from "playwright-core";

const [base, shot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage();
  await page.goto(base + "/ws.html");
  await page.waitForSelector("#status:text('open')", { timeout: 10000 });
  const text = "echo from chromium " + Date.now();
  await page.fill("#text", text);
  await page.click("#send");
  await page.waitForFunction((t) => document.getElementById("echo").textContent === t, text, { timeout: 10000 });
  if (shot) await page.screenshot({ path: shot });
  console.log("echoed: " + (await page.textContent("#echo")));
} finally {
  await browser.close();
}
