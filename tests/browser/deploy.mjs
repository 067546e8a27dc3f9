// The webexec demo page as deployed: loads each page given (through the
// nginx gateway over https with a certificate Chromium does not know, or
// straight from a server), waits for its pane, types a command into the
// terminal and waits for the text it should print. With "relay": true
// the page is told to use relayed candidates only (#relay=1, the browser's
// iceTransportPolicy "relay"), and the script checks in the connection's
// statistics that the pair in use is a relayed one.
// Usage: node deploy.mjs '[{"url": ..., "type": ..., "expect": ..., "relay": bool}, ...]'
// Exits 0 when every page showed its text; prints what it saw otherwise.
import { launch, screenOf } from "./chromium.mjs";

const pages = JSON.parse(process.argv[2] || "[]");
if (!Array.isArray(pages) || pages.length === 0) {
  console.error("usage: node deploy.mjs JSON-ARRAY-OF-PAGES");
  process.exit(2);
}

const browser = await launch();
// The gateway's certificate is the test's own.
const context = await browser.newContext({ ignoreHTTPSErrors: true });

process.exitCode = 0;
try {
  for (const { url, type, expect, relay } of pages) {
    const page = await context.newPage();
    page.on("pageerror", (err) => console.error("page error:", err.message));
    await page.goto(url + (relay ? "&relay=1" : ""));
    try {
      await page.waitForFunction(() => window.webexec && window.webexec.paneId, null, { timeout: 20000 });
    } catch (e) {
      const status = await page.evaluate(() => document.getElementById("status").textContent);
      throw new Error(`${url}: no pane in 20 s; the page says ${JSON.stringify(status)}`);
    }
    await page.locator("#terminal").click();
    await page.keyboard.type(type + "\n");
    const deadline = Date.now() + 20000;
    let shown = await screenOf(page);
    while (!shown.includes(expect) && Date.now() < deadline) {
      await page.waitForTimeout(20);
      shown = await screenOf(page);
    }
    if (!shown.includes(expect)) {
      console.error(`${url}: ${JSON.stringify(expect)} never appeared; the terminal shows:\n${shown}`);
      process.exitCode = 1;
      break;
    }
    // What the connection in use really is, from both ends' candidates.
    const pair = await page.evaluate(async () => {
      const stats = await window.webexec.pc.getStats();
      let selected = null;
      stats.forEach((s) => {
        if (s.type === "transport" && s.selectedCandidatePairId) selected = stats.get(s.selectedCandidatePairId);
      });
      if (!selected) return null;
      return { local: stats.get(selected.localCandidateId).candidateType, remote: stats.get(selected.remoteCandidateId).candidateType };
    });
    if (relay && (!pair || pair.local !== "relay")) {
      console.error(`${url}: the connection in use is not relayed: ${JSON.stringify(pair)}`);
      process.exitCode = 1;
      break;
    }
    console.log(`ok: ${url.split("#")[0]} shows ${JSON.stringify(expect)} (candidates ${JSON.stringify(pair)})`);
    await page.close();
  }
} finally {
  await browser.close();
}
