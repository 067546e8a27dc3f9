// The origin rule in a real browser. Serves a page of another origin
// (http://evil.test:PORT/, a name Chromium is told maps to 127.0.0.1) and,
// from that page, tries every server's command path, each touching its own
// marker file:
//   foreign: servers without auth, no token       -> nothing may run
//   token:   servers with auth, the token given    -> everything runs
//   own:     the server's own page, without auth   -> runs (webexec's demo
//            page, pow's /docs/ page)
//   rebound: a server's own page under a name that is not loopback (what a
//            DNS-rebinding page is) -> 403
// Usage: node origins.mjs CONFIG_JSON, where CONFIG_JSON is
//   {"markers": DIR, "open": {wsep, webterm, pow, webexec: "127.0.0.1:PORT"},
//    "auth": {...the same}, "tokens": {wsep, webterm, pow, webexec: TOKEN}}
// Prints one JSON object of what each try saw; the Rust driver
// (tests/tests/origins_browser.rs) checks it and the marker files.
import { createServer } from "node:http";
import { launch } from "./chromium.mjs";

const config = JSON.parse(process.argv[2] || "null");
if (!config) {
  console.error("usage: node origins.mjs CONFIG_JSON");
  process.exit(2);
}
const marker = (name) => `${config.markers}/${name}`;

// The other origin's page: nothing but a title; the tries run in it.
const site = createServer((req, res) => {
  res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
  res.end("<!doctype html><title>another site</title><p>another site</p>");
});
await new Promise((resolve) => site.listen(0, "127.0.0.1", resolve));
const sitePort = site.address().port;

const browser = await launch(["--host-resolver-rules=MAP evil.test 127.0.0.1"]);

// Runs in the page: tries each command path of `servers` (with `tokens`
// when given), each running `touch -- markers[route]`. Resolves to
// {route: what the page saw}: "ran", "refused" (the browser got no
// connection or answer), "not run" (connected, command refused), or for
// pow REST, which answers no CORS, "sent" (the page cannot read the answer).
async function tryAll({ servers, tokens, markers }) {
  const within = (ms, promise) =>
    Promise.race([promise, new Promise((_, reject) => setTimeout(() => reject(new Error("timed out")), ms))]);
  const query = (route) => (tokens ? "?token=" + encodeURIComponent(tokens[route]) : "");
  const bearer = (route) => (tokens ? { Authorization: "Bearer " + tokens[route] } : {});

  // A WebSocket session: `start(ws)` on open, `onMessage(ws, data)` may
  // settle it; a close before the open is a refusal.
  const session = (url, protocols, start, onMessage) =>
    new Promise((resolve) => {
      const ws = new WebSocket(url, protocols);
      ws.binaryType = "arraybuffer";
      let opened = false;
      let outcome = null;
      ws.onopen = () => {
        opened = true;
        start(ws);
      };
      ws.onmessage = (e) => {
        const seen = onMessage(ws, e.data);
        if (seen) outcome = outcome || seen;
      };
      ws.onclose = (e) => resolve(opened ? outcome || `closed ${e.code}` : "refused");
    });
  const bytes = (value) => new TextEncoder().encode(typeof value === "string" ? value : JSON.stringify(value));
  const text = (data) => (typeof data === "string" ? data : new TextDecoder().decode(data));

  const wsep = () =>
    session(
      `ws://${servers.wsep}/${query("wsep")}`,
      [],
      (ws) => ws.send(bytes({ type: "start", command: { command: "touch", args: ["--", markers.wsep] } })),
      // A message is a JSON header, a newline, and a body.
      (ws, data) => (JSON.parse(text(data).split("\n")[0]).type === "exit_code" ? "ran" : null),
    );
  const webterm = () =>
    session(
      `ws://${servers.webterm}/`,
      [],
      (ws) => {
        ws.send(JSON.stringify({ type: "authentication", payload: { token: tokens ? tokens.webterm : "none" } }));
        ws.send(JSON.stringify({ type: "command", payload: { command: `touch -- '${markers.webterm}'`, clientId: 1 } }));
      },
      (ws, data) => {
        const msg = JSON.parse(text(data));
        if (msg.type === "command" && msg.payload.result !== "ok") {
          ws.close();
          return "not run";
        }
        if (msg.type === "update" && msg.payload.status === "completed") {
          ws.close();
          return msg.payload.exitCode === 0 ? "ran" : `exit ${msg.payload.exitCode}`;
        }
        return null;
      },
    );
  const powWebSocket = () =>
    session(
      `ws://${servers.pow}/${query("pow")}`,
      ["pow-1"],
      (ws) => ws.send(bytes({ call: "touch", params: [markers.powWebSocket] })),
      (ws, data) => (typeof data === "string" ? null : JSON.parse(text(data)).status === "fulfilled" ? "ran" : "not run"),
    );
  // A simple request (text/plain, no preflight), as an attacking page
  // would send it: it reaches the server whatever the server answers.
  const powRest = async () => {
    await fetch(`http://${servers.pow}/new${query("pow")}`, {
      method: "POST",
      mode: "no-cors",
      body: JSON.stringify({ call: "touch", params: [markers.powRest] }),
    });
    return "sent";
  };

  // webexec with the browser's WebRTC: a channel whose label is the
  // command, offered with /offer (raw SDP, preflighted) or the seed's
  // /connect (base64 JSON, a simple request unless a token is sent).
  const webexec = async (route, label) => {
    const pc = new RTCPeerConnection();
    try {
      const channel = pc.createDataChannel(label);
      const closed = new Promise((resolve) => (channel.onclose = resolve));
      const gathered = new Promise((resolve) => {
        pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && resolve();
      });
      await pc.setLocalDescription(await pc.createOffer());
      // Candidates gathered so far are enough on loopback.
      await within(5000, gathered).catch(() => {});
      const sdp = pc.localDescription.sdp;
      let answer;
      try {
        if (route === "offer") {
          const r = await fetch(`http://${servers.webexec}/offer`, {
            method: "POST",
            headers: { "Content-Type": "application/sdp", ...bearer("webexec") },
            body: sdp,
          });
          if (r.status !== 201) return `status ${r.status}`;
          answer = await r.text();
        } else {
          const offer = btoa(JSON.stringify({ type: "offer", sdp }));
          const r = await fetch(`http://${servers.webexec}/connect`, {
            method: "POST",
            headers: bearer("webexec"),
            body: JSON.stringify({ fingerprint: "", api_version: 1, offer }),
          });
          if (r.status !== 200) return `status ${r.status}`;
          answer = JSON.parse(atob((await r.text()).trim())).sdp;
        }
      } catch (e) {
        return "refused"; // no CORS answer: the browser hides why
      }
      await pc.setRemoteDescription({ type: "answer", sdp: answer });
      let first = null;
      channel.onmessage = (e) => (first = first === null ? text(e.data) : first);
      await within(20000, closed);
      return /^\d/.test(first || "") ? "ran" : `not run: ${first}`;
    } finally {
      pc.close();
    }
  };

  const tries = {
    wsep,
    webterm,
    powWebSocket,
    powRest,
    webexecOffer: () => webexec("offer", `touch,--,${markers.webexecOffer}`),
    webexecConnect: () => webexec("connect", `touch,--,${markers.webexecConnect}`),
  };
  const seen = {};
  for (const [route, attempt] of Object.entries(tries)) {
    try {
      seen[route] = await within(30000, attempt());
    } catch (e) {
      seen[route] = "error: " + e.message;
    }
  }
  return seen;
}

const routes = ["wsep", "webterm", "powWebSocket", "powRest", "webexecOffer", "webexecConnect"];
const markersFor = (phase) => Object.fromEntries(routes.map((r) => [r, marker(`${phase}-${r}`)]));

// The statuses of the pages' HTTP requests, as the browser got them (also
// for those the page itself may not read).
function recordResponses(page) {
  const statuses = [];
  page.on("response", (r) => statuses.push({ url: r.url(), status: r.status() }));
  return statuses;
}

const result = {};
try {
  // From another site, no token, against servers without auth.
  const page = await browser.newPage();
  const foreignStatuses = recordResponses(page);
  await page.goto(`http://evil.test:${sitePort}/`);
  result.foreign = await page.evaluate(tryAll, { servers: config.open, tokens: null, markers: markersFor("foreign") });
  result.foreignStatuses = foreignStatuses;

  // The same page with the token, against servers with auth. pow's REST
  // answer is opaque to the page: read its id as the browser got it, then
  // wait for the result as any client may.
  const newCall = page.waitForResponse((r) => r.url().includes(`${config.auth.pow}/new`));
  result.token = await page.evaluate(tryAll, { servers: config.auth, tokens: config.tokens, markers: markersFor("token") });
  const created = await newCall;
  if (created.status() === 200) {
    const id = JSON.parse(await created.text());
    const status = `http://${config.auth.pow}/status/${id}?token=${config.tokens.pow}`;
    let outcome = "pending";
    const deadline = Date.now() + 20000;
    while (outcome === "pending" && Date.now() < deadline) {
      outcome = (await (await fetch(status)).json()).result.status;
    }
    result.token.powRest = outcome === "fulfilled" ? "ran" : outcome;
  } else {
    result.token.powRest = `status ${created.status()}`;
  }
  await page.close();

  // The servers' own pages, without auth.
  const own = {};
  const demo = await browser.newPage();
  await demo.goto(`http://${config.open.webexec}/#token=none&command=touch,--,${marker("own-webexec")}`);
  own.webexecPage = await demo
    .waitForFunction(
      () => {
        const buffer = window.webexec && window.webexec.term.buffer.active;
        for (let i = 0; buffer && i < buffer.length; i++) {
          if (buffer.getLine(i).translateToString(true).includes("ended]")) return true;
        }
        return false;
      },
      null,
      { timeout: 20000, polling: 20 },
    )
    .then(
      () => "ran",
      () => "no pane end in 20 s",
    );
  await demo.close();
  const docs = await browser.newPage();
  await docs.goto(`http://${config.open.pow}/docs/`);
  own.powDocs = await docs.evaluate(async (path) => {
    const r = await fetch("../new", { method: "POST", body: JSON.stringify({ call: "touch", params: [path] }) });
    if (r.status !== 200) return `status ${r.status}`;
    const id = await r.json();
    for (let i = 0; i < 1000; i++) {
      const status = (await (await fetch(`../status/${id}`)).json()).result.status;
      if (status !== "pending") return status === "fulfilled" ? "ran" : status;
    }
    return "still pending";
  }, marker("own-pow"));
  await docs.close();
  result.own = own;

  // Rebinding: the servers' own pages under a name that resolves here.
  const rebound = await browser.newPage();
  result.rebound = {};
  for (const [name, path] of [
    ["webexecPage", `http://evil.test:${config.open.webexec.split(":").pop()}/`],
    ["powDocs", `http://evil.test:${config.open.pow.split(":").pop()}/docs/`],
  ]) {
    const response = await rebound.goto(path);
    result.rebound[name] = response ? response.status() : "no response";
  }
  await rebound.close();
} finally {
  await browser.close();
  site.close();
}
console.log(JSON.stringify(result));
