// Opens the page in headless Chromium (Debian's, through playwright-core), waits until it
// says done or error, saves a screenshot and prints what the page shows as one JSON line.
// Usage: node drive.mjs <page URL> <screenshot.png>   (CHROMIUM overrides /usr/bin/chromium)
// Playwright gives the browser a new, empty profile of its own.
import { chromium } from "playwright-core";

const [pageUrl, screenshot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
try {
  const page = await browser.newPage({ viewport: { width: 900, height: 700 } });
  const console_ = [];
  page.on("console", (message) => console_.push(`${message.type()}: ${message.text()}`));
  await page.goto(pageUrl);
  await page.waitForFunction(() => /^(done|error)/.test(document.getElementById("status").textContent), null, {
    timeout: 60000,
  });
  await page.screenshot({ path: screenshot, fullPage: true });
  const text = (id) => page.locator(`#${id}`).textContent();
  const result = {
    status: await text("status"),
    specs: await text("specs"),
    kernel: await text("kernel"),
    output: await text("output"),
    console: console_,
  };
  process.stdout.write(JSON.stringify(result) + "\n");
} finally {
  await browser.close();
}
