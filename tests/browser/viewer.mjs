// The demo page as a read-only viewer: loads URL (which carries
// #token=VIEW_TOKEN&view=1&pane=ID), waits until the attached pane's
// redraw shows BEFORE, checks that the terminal takes no input and draws
// no cursor, types TYPED into it anyway, prints "typed" (the test then
// has the pane's owner type), and waits until the pane shows AFTER.
// Usage: node viewer.mjs URL BEFORE TYPED AFTER [SCREENSHOT.png]
// Exits 0 when all held and TYPED never reached the process (the pane's
// program prints `got:LINE` for each line it reads).
import { launch, openPane, untilScreen } from "./chromium.mjs";

const [url, before, typed, after, screenshot] = process.argv.slice(2);
if (!url || !before || !typed || !after) {
  console.error("usage: node viewer.mjs URL BEFORE TYPED AFTER [SCREENSHOT.png]");
  process.exit(2);
}

const browser = await launch();

const untilShown = (page, want) => untilScreen(page, (shown) => shown.includes(want));

try {
  const page = await openPane(browser, url);
  let shown = await untilShown(page, before);
  if (!shown.includes(before)) throw new Error(`no ${before} after attaching; the terminal shows:\n${shown}`);
  await page.locator("#terminal").click();
  await page.keyboard.type(typed + "\n");
  // Focused, as a user clicking it would leave it: still no cursor drawn.
  const state = await page.evaluate(() => {
    const cursor = document.querySelector(".xterm-rows .xterm-cursor");
    const shown = (id) => getComputedStyle(document.getElementById(id)).display !== "none";
    return {
      viewOnly: window.webexec.viewOnly,
      disableStdin: window.webexec.term.options.disableStdin,
      cursor: cursor ? getComputedStyle(cursor).backgroundColor : "none",
      status: document.getElementById("status").textContent,
      newPane: shown("new-pane"),
      command: shown("command-field"),
    };
  });
  const invisible = state.cursor === "none" || state.cursor === "rgba(0, 0, 0, 0)";
  if (!state.viewOnly || !state.disableStdin || !invisible || state.newPane || state.command) {
    throw new Error("the page is not read-only: " + JSON.stringify(state));
  }
  if (!state.status.includes("read-only")) throw new Error("status: " + state.status);
  console.log("typed");
  shown = await untilShown(page, after);
  if (screenshot) await page.screenshot({ path: screenshot });
  if (!shown.includes(after)) throw new Error(`no ${after}; the terminal shows:\n${shown}`);
  if (shown.includes(typed)) throw new Error(`the viewer's ${typed} reached the pane:\n${shown}`);
  console.log("ok: the viewer watched the pane and its keys went nowhere");
} catch (e) {
  console.error(e.message);
  process.exitCode = 1;
} finally {
  await browser.close();
}
