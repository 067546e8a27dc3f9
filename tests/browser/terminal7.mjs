// Terminal7's life cycle against webexec-server, in headless Chromium with
// the browser's own WebRTC, from a page of another origin (terminal7.html,
// served here on a port of its own) whose handlers decode exactly as
// Terminal7's do: binary only.
//
// Usage: node terminal7.mjs SERVER_URL TOKEN WEBEXEC_SERVER_BINARY WORK_DIR
//
// Steps: connect (POST /offer, trickled candidates), add_pane, input and
// output, resize, set_payload/get_payload, mark, the peer connection
// closes, output is written while no one is connected, a NEW peer
// connection sends restore and reconnect_pane and gets that output (and
// not what came before the marker), then the clipboard both ways through
// `webexec-server copy` and `paste` run in the pane. Prints "ok: STEP" as
// it goes; exits 1 with the reason on the first failure.
import { launch } from "./chromium.mjs";
import { readFile, writeFile, access } from "node:fs/promises";
import { createServer } from "node:http";
import { execFileSync } from "node:child_process";
import path from "node:path";

const [server, token, binary, work] = process.argv.slice(2);
if (!server || !token || !binary || !work) {
  console.error("usage: node terminal7.mjs SERVER_URL TOKEN WEBEXEC_SERVER_BINARY WORK_DIR");
  process.exit(2);
}
const ok = (step) => console.log("ok: " + step);

// Terminal7 runs from an origin of its own: serve the page on another port.
const html = await readFile(new URL("terminal7.html", import.meta.url));
const site = createServer((req, res) => {
  res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
  res.end(html);
});
await new Promise((resolve) => site.listen(0, "127.0.0.1", resolve));
const pageUrl = `http://127.0.0.1:${site.address().port}/`;

const browser = await launch();

// Waits for `file` to exist: the shell in the pane makes it.
async function fileAppears(file) {
  const deadline = Date.now() + 10000;
  for (;;) {
    try {
      await access(file);
      return;
    } catch {
      if (Date.now() > deadline) throw new Error(file + " never appeared");
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

let failed = false;
try {
  const page = await browser.newPage();
  page.on("console", (m) => console.error("page: " + m.text()));
  page.on("pageerror", (e) => console.error("page error: " + e.message));
  await page.goto(pageUrl);
  const offer = new URL("offer", server).href;

  // 1. Connect, as HTTPWebRTCSession does.
  await page.evaluate(
    async ([offer, token]) => {
      window.session = new Session(offer, token);
      await window.session.connect();
    },
    [offer, token],
  );
  ok("connected over /offer with trickled candidates");

  // 2. add_pane: channel "<ref>:<id>", then the ack with the id.
  const paneId = await page.evaluate(async () => {
    const pane = await window.session.openChannel({ command: ["sh"], rows: 24, cols: 80, parent: 0 });
    if (pane.ackBody !== String(pane.id)) throw new Error("add_pane ack body " + JSON.stringify(pane.ackBody));
    window.pane = pane;
    return pane.id;
  });
  ok("add_pane opened pane " + paneId + " and was acked");

  // 3. Input as text and as binary; the output comes back.
  await page.evaluate(async () => {
    window.pane.send("echo one-$((6*7))\r");
    await window.pane.until("one-42");
    window.pane.send(new TextEncoder().encode("echo two-$((6*8))\r"));
    await window.pane.until("two-48");
  });
  ok("input and output");

  // 4. resize: ack, and the shell sees the new size.
  await page.evaluate(async () => {
    await window.session.sendCTRLMsg("resize", { pane_id: window.pane.id, sx: 100, sy: 30 }).reply;
    window.pane.send("stty size\r");
    await window.pane.until("30 100");
  });
  ok("resize acked and applied");

  // 5. set_payload (Terminal7 sends `Payload`) and get_payload.
  await page.evaluate(async () => {
    const layout = { width: 1024, height: 768, windows: [{ name: "main", layout: { dir: "TBD", pane: 1 } }] };
    const set = await window.session.sendCTRLMsg("set_payload", { Payload: layout }).reply;
    const got = await window.session.sendCTRLMsg("get_payload").reply;
    // Key order is not part of JSON: compare with keys sorted.
    const canon = (v) =>
      Array.isArray(v) ? v.map(canon)
        : v && typeof v === "object" ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, canon(v[k])]))
        : v;
    const same = (a, b) => JSON.stringify(canon(a)) === JSON.stringify(canon(b));
    if (typeof got !== "string" || !same(JSON.parse(got), layout))
      throw new Error("get_payload body " + JSON.stringify(got));
    if (set !== got) throw new Error("set_payload ack body " + JSON.stringify(set));
  });
  ok("set_payload and get_payload");

  // 6. The device sleeps: the shell waits on a fifo, the app closes its
  // channels, gets a marker, and the peer connection closes.
  const fifo = path.join(work, "away.fifo");
  const done = path.join(work, "away.done");
  execFileSync("mkfifo", [fifo]);
  const marker = await page.evaluate(
    async ([fifo, done]) => {
      window.pane.send(`read line < ${fifo}; echo "got-$line"; : > ${done}\r`);
      await window.pane.until("got-$line");
      const body = await window.session.sendCTRLMsg("mark").reply;
      const marker = parseInt(body);
      if (typeof body !== "string" || isNaN(marker)) throw new Error("mark ack body " + JSON.stringify(body));
      window.pane.dc.close();
      window.session.close();
      return marker;
    },
    [fifo, done],
  );
  ok("mark acked with marker " + marker + "; peer connection closed");

  // 7. Output is written while no one is connected.
  await writeFile(fifo, "while-away\n");
  await fileAppears(done);
  ok("the pane wrote output while away");

  // 8. A NEW peer connection: restore, reconnect_pane, and the output
  // written while away arrives; what came before the marker does not.
  const replay = await page.evaluate(
    async ([offer, token, marker, paneId]) => {
      const session = new Session(offer, token);
      await session.connect();
      const payload = await session.sendCTRLMsg("restore", { marker }).reply;
      if (typeof payload !== "string" || !JSON.parse(payload).windows) throw new Error("restore ack body " + JSON.stringify(payload));
      const pane = await session.openChannel({ id: paneId });
      window.session = session;
      window.pane = pane;
      return await pane.until("got-while-away");
    },
    [offer, token, marker, paneId],
  );
  if (replay.includes("one-42") || replay.includes("two-48"))
    throw new Error("the reconnect replayed output from before the marker: " + JSON.stringify(replay));
  ok("restore + reconnect_pane on a new peer connection replayed the output written while away");

  // 9. The clipboard, from a program in the pane: `webexec-server copy`
  // sends set_clipboard to the client; `paste` asks get_clipboard and
  // prints the client's ack.
  await page.evaluate(async (binary) => {
    const session = window.session;
    window.clipboard = "from-the-phone";
    window.copied = new Promise((resolve, reject) => {
      setTimeout(() => reject(new Error("no set_clipboard in 10 s; pane shows " + JSON.stringify(window.pane.text()))), 10000);
      session.onCMD = (msg) => {
        if (msg.type === "set_clipboard") {
          session.ack(msg.message_id);
          resolve(msg.args);
        } else if (msg.type === "get_clipboard") {
          session.ack(msg.message_id, window.clipboard);
        }
      };
    });
    window.pane.send(`printf 'from-the-host' | ${binary} copy && echo copied-ok\r`);
    const args = await window.copied;
    if (args.data !== "from-the-host" || !String(args.mimetype).startsWith("text/plain"))
      throw new Error("set_clipboard args " + JSON.stringify(args));
    await window.pane.until("copied-ok");
    window.pane.send(`echo "pasted:$(${binary} paste)"\r`);
    await window.pane.until("pasted:from-the-phone");
  }, binary);
  ok("set_clipboard and get_clipboard through webexec-server copy/paste");
} catch (e) {
  failed = true;
  console.log("FAILED: " + (e && e.message ? e.message : e));
} finally {
  await browser.close();
  site.close();
}
process.exit(failed ? 1 : 0);
