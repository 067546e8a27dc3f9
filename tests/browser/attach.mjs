// Attaches webexec's demo page to an existing pane (`#pane=ID` in URL),
// in the execwire daemon one that another protocol started: the page must
// show the pane's screen (it holds SEEN), and what is typed in the page
// must reach the pane (`echo from-chromium-$((8*8))` prints 64).
// Usage: node attach.mjs URL ID SEEN. Exits 0 on success; prints what the
// terminal showed otherwise.
import { launch, screenOf } from "./chromium.mjs";

const [url, id, seen] = process.argv.slice(2);
if (!url || !id || !seen) {
  console.error("usage: node attach.mjs URL ID SEEN");
  process.exit(2);
}

const browser = await launch();

// Polls the terminal until it shows `text` or 20 s; returns the last screen.
async function untilShown(page, text) {
  const deadline = Date.now() + 20000;
  let shown = await screenOf(page);
  while (!shown.includes(text) && Date.now() < deadline) {
    await page.waitForTimeout(20);
    shown = await screenOf(page);
  }
  return shown;
}

process.exitCode = 1;
try {
  const page = await browser.newPage();
  page.on("pageerror", (err) => console.error("page error:", err.message));
  await page.goto(url);
  await page.waitForFunction(() => window.webexec && window.webexec.paneId, null, { timeout: 20000 });
  const attached = await page.evaluate(() => window.webexec.paneId);
  if (String(attached) !== id) {
    console.error(`the page attached pane ${attached}, not ${id}`);
  } else {
    let shown = await untilShown(page, seen);
    if (!shown.includes(seen)) {
      console.error(`the screen never showed ${seen}; it shows:\n${shown}`);
    } else {
      await page.locator("#terminal").click();
      await page.keyboard.type("echo from-chromium-$((8*8))\n");
      shown = await untilShown(page, "from-chromium-64");
      if (shown.includes("from-chromium-64")) {
        console.log(`ok: pane ${id} attached, its screen shown, typing reached it`);
        process.exitCode = 0;
      } else {
        console.error("the typed command's output never appeared:\n" + shown);
      }
    }
  }
} finally {
  await browser.close();
}
