// Loads webexec-server's demo page in headless Chromium, which connects
// with the browser's own WebRTC (POST /offer, trickled candidates, the `%`
// channel, add_pane), then types a command into the terminal and waits for
// its output. Usage: node webexec.mjs URL (URL carries #token=...).
// Exits 0 on success; prints what the terminal showed otherwise.
import { chromium } from "playwright-core";

const url = process.argv[2];
if (!url) {
  console.error("usage: node webexec.mjs URL");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
  ],
});
let screen = "";
try {
  const page = await browser.newPage();
  page.on("console", (msg) => console.error("page:", msg.text()));
  page.on("pageerror", (err) => console.error("page error:", err.message));
  await page.goto(url);
  await page.waitForFunction(() => window.webexec && window.webexec.paneId, null, { timeout: 20000 });
  const text = () =>
    page.evaluate(() => {
      const buffer = window.webexec.term.buffer.active;
      const lines = [];
      for (let i = 0; i < buffer.length; i++) lines.push(buffer.getLine(i).translateToString(true));
      return lines.join("\n");
    });
  await page.locator("#terminal").click();
  await page.keyboard.type("echo hello-from-$((6*7))\n");
  const deadline = Date.now() + 20000;
  while (Date.now() < deadline) {
    screen = await text();
    // The echoed command line holds the text unexpanded; the output has 42.
    if (screen.includes("hello-from-42")) {
      console.log("ok: the terminal shows the command's output");
      process.exitCode = 0;
      break;
    }
    await page.waitForTimeout(50);
  }
  if (!screen.includes("hello-from-42")) {
    console.error("the output never appeared; the terminal shows:\n" + screen);
    process.exitCode = 1;
  }
} finally {
  await browser.close();
}
