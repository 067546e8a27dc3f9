// Loads webexec-server's demo page in headless Chromium, which connects
// with the browser's own WebRTC (POST /offer, trickled candidates, the `%`
// channel, add_pane), then types a command into the terminal and waits for
// its output. Usage: node webexec.mjs URL (URL carries #token=...).
// Exits 0 on success; prints what the terminal showed otherwise.
// With `--time N`, instead loads the page N times with the command
// `echo,hi` and prints the time from connecting to the pane's first output
// (p50 and p99, ms): the webexec benchmark's "offer to first output" as a
// browser sees it.
import { launch, openPane, untilScreen } from "./chromium.mjs";

const url = process.argv[2];
const timeIndex = process.argv.indexOf("--time");
const rounds = timeIndex > 0 ? Number(process.argv[timeIndex + 1]) : 0;
if (!url || (timeIndex > 0 && !(rounds > 0))) {
  console.error("usage: node webexec.mjs URL [--time N]");
  process.exit(2);
}

const browser = await launch();

if (rounds > 0) {
  try {
    const times = [];
    for (let i = 0; i < rounds; i++) {
      const page = await browser.newPage();
      await page.goto(url + "&command=echo,hi");
      try {
        await page.waitForFunction(() => window.webexec && window.webexec.firstOutputMs !== undefined, null, {
          timeout: 20000,
          polling: 5,
        });
      } catch (e) {
        const status = await page.evaluate(() => document.getElementById("status").textContent);
        throw new Error(`round ${i + 1}: no output in 20 s; the page says ${JSON.stringify(status)}`);
      }
      times.push(await page.evaluate(() => window.webexec.firstOutputMs));
      await page.close();
    }
    times.sort((a, b) => a - b);
    const q = (p) => times[Math.min(times.length - 1, Math.floor(p * times.length))];
    console.log(`chromium: connect to first output p50 ${q(0.5).toFixed(1)} ms, p99 ${q(0.99).toFixed(1)} ms, n=${times.length}`);
  } finally {
    await browser.close();
  }
  process.exit(0);
}
try {
  const page = await openPane(browser, url);
  await page.locator("#terminal").click();
  await page.keyboard.type("echo hello-from-$((6*7))\n");
  // The echoed command line holds the text unexpanded; the output has 42.
  const screen = await untilScreen(page, (shown) => shown.includes("hello-from-42"));
  if (screen.includes("hello-from-42")) {
    console.log("ok: the terminal shows the command's output");
    process.exitCode = 0;
  } else {
    console.error("the output never appeared; the terminal shows:\n" + screen);
    process.exitCode = 1;
  }
  // A pane that prints and exits at once: its output and its close come
  // right behind the channel's open, before the page has the channel's
  // object (Chromium dropped the output when the close came that early).
  // Several rounds, as the race is one of timing.
  for (let i = 0; i < 5 && process.exitCode === 0; i++) {
    const quick = await browser.newPage();
    await quick.goto(url + `&command=echo,quick-${i}`);
    const shown = await untilScreen(quick, (shown) => shown.includes("ended]"));
    if (!shown.includes(`quick-${i}`) || !shown.includes("ended]")) {
      console.error(`round ${i}: a pane running echo,quick-${i} showed:\n${shown}`);
      process.exitCode = 1;
    }
    await quick.close();
  }
  if (process.exitCode === 0) console.log("ok: a pane that exits at once shows its output");
} finally {
  await browser.close();
}
