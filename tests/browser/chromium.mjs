// How every browser test starts Debian's chromium (or $CHROMIUM): headless,
// nothing fetched from the network at start, and WebRTC offering real
// addresses rather than mDNS names, so nothing multicast leaves the tests.
import { chromium } from "playwright-core";

export function launch(extraArgs = []) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--disable-features=WebRtcHideLocalIpsWithMdns",
      ...extraArgs,
    ],
  });
}

// What the demo page's terminal shows, a line each.
export const screenOf = (page) =>
  page.evaluate(() => {
    const buffer = window.webexec && window.webexec.term.buffer.active;
    const lines = [];
    for (let i = 0; buffer && i < buffer.length; i++) lines.push(buffer.getLine(i).translateToString(true));
    return lines.join("\n");
  });

// Polls the demo page's terminal until `done(screen)` or 20 s; returns
// the last screen.
export async function untilScreen(page, done) {
  const deadline = Date.now() + 20000;
  let shown = await screenOf(page);
  while (!done(shown) && Date.now() < deadline) {
    await page.waitForTimeout(20);
    shown = await screenOf(page);
  }
  return shown;
}

// A new page of `browser` at the demo page `url`, its console on stderr,
// once it is attached to a pane (20 s at most).
export async function openPane(browser, url) {
  const page = await browser.newPage();
  page.on("console", (msg) => console.error("page:", msg.text()));
  page.on("pageerror", (err) => console.error("page error:", err.message));
  await page.goto(url);
  await page.waitForFunction(() => window.webexec && window.webexec.paneId, null, { timeout: 20000 });
  return page;
}
