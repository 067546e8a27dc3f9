// The webexec benchmark's browser half: headless Chromium, with its own
// WebRTC, as the client of a running webexec-server. Prints figures and
// asserts nothing, except that every byte arrived intact.
//
// Usage: node bench.mjs URL --file PATH [--runs N] [--echoes N] [--relay]
//   URL   the server's page with the token: http://HOST:PORT/#token=T
//   PATH  a file on the server's machine (the benchmark writes 100 MiB of
//         random bytes): each run opens a pane channel `cat,PATH` (no PTY)
//         and counts every byte it delivers, then compares the SHA-256 of
//         what arrived with the file's.
// With --relay, the connection may use relayed candidates only (the ICE
// servers, TURN credentials included, come from the server's
// `ice-servers`, as the demo page gets them): the figures through a TURN
// relay.
// Then, unless --echoes 0: 1-byte round trips through `cat` on a raw PTY,
// idle and while another pane of the same connection streams PATH in a loop.
//
// Output, one figure a line (webexec-bench reads the lines starting with
// "chromium"):
//   chromium output: run 1: 104857600 of 104857600 bytes in 3.21 s = 31.2 MiB/s, sha-256 ok
//   chromium output: median 31.2 MiB/s (runs 30.1-32.0), every byte intact in 3 of 3 runs
//   chromium echo idle: p50 .. ms, p99 .. ms, max .. ms (n=..)
//   chromium echo under load: p50 .. ms, p99 .. ms, max .. ms (n=..); the other pane streamed .. MiB/s
// Exit status 0 when every run delivered every byte intact, 1 otherwise.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { chromium } from "playwright-core";

function option(name, fallback) {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : fallback;
}
const url = process.argv[2];
const file = option("--file");
const runs = Number(option("--runs", "3"));
const echoes = Number(option("--echoes", "300"));
const relay = process.argv.includes("--relay");
if (!url || !url.includes("#token=") || !file || !(runs > 0) || !(echoes >= 0)) {
  console.error("usage: node bench.mjs http://HOST:PORT/#token=T --file PATH [--runs N] [--echoes N] [--relay]");
  process.exit(2);
}
const base = url.slice(0, url.indexOf("#"));
const token = decodeURIComponent(url.slice(url.indexOf("#token=") + "#token=".length).split("&")[0]);
const contents = readFileSync(file);
const size = contents.length;
const expected = createHash("sha256").update(contents).digest("hex");
const expectedMibs = [];
for (let at = 0; at < size; at += 1048576) {
  expectedMibs.push(createHash("sha256").update(contents.subarray(at, at + 1048576)).digest("hex"));
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
    // Offer real addresses, not mDNS names: nothing multicast.
    "--disable-features=WebRtcHideLocalIpsWithMdns",
  ],
});

// Everything below `inPage` runs inside the page, on the server's origin
// (its demo page, loaded without a token so that it does not connect).
const inPage = {
  // Connects as app.js does: POST /offer with the token, candidates
  // trickled with PATCH, the `%` channel open before the offer.
  async connect(token, relay) {
    let config = {};
    if (relay) {
      const ice = await fetch("/ice-servers", { headers: { Authorization: "Bearer " + token } });
      if (!ice.ok) throw new Error(`GET /ice-servers: ${ice.status}`);
      config = { iceServers: (await ice.json()).iceServers, iceTransportPolicy: "relay" };
    }
    const pc = new RTCPeerConnection(config);
    const control = pc.createDataChannel("%");
    let location = null;
    const early = [];
    const trickle = (candidate) =>
      fetch(location, {
        method: "PATCH",
        headers: { "Content-Type": "application/json", Authorization: "Bearer " + token },
        body: JSON.stringify(candidate),
      }).catch(() => {});
    pc.onicecandidate = (e) => {
      if (!e.candidate) return;
      if (location) trickle(e.candidate.toJSON());
      else early.push(e.candidate.toJSON());
    };
    await pc.setLocalDescription(await pc.createOffer());
    const response = await fetch("/offer", {
      method: "POST",
      headers: { "Content-Type": "application/sdp", Authorization: "Bearer " + token },
      body: pc.localDescription.sdp,
    });
    const body = await response.text();
    if (response.status !== 201) throw new Error(`POST /offer: ${response.status} ${body}`);
    await pc.setRemoteDescription({ type: "answer", sdp: body });
    location = response.headers.get("Location");
    early.splice(0).forEach(trickle);
    await new Promise((resolve, reject) => {
      control.onopen = resolve;
      control.onclose = () => reject(new Error("control channel closed"));
    });
    return pc;
  },

  // Opens a pane channel labelled `label`; resolves with it once its first
  // message (the pane id) arrived.
  openPane(pc, label) {
    const channel = pc.createDataChannel(label);
    channel.binaryType = "arraybuffer";
    return new Promise((resolve, reject) => {
      channel.onmessage = () => resolve(channel);
      channel.onclose = () => reject(new Error(`${label}: closed before its pane id`));
    });
  },

  // One `cat` of the file: every byte kept, then hashed.
  async output(pc, file, size) {
    const kept = new Uint8Array(size);
    let got = 0;
    const start = performance.now();
    let last = start;
    const channel = await this.openPane(pc, `cat,${file}`);
    await new Promise((resolve) => {
      channel.onmessage = (e) => {
        const data = new Uint8Array(e.data);
        if (got + data.length <= size) kept.set(data, got);
        got += data.length;
        last = performance.now();
      };
      channel.onclose = resolve;
    });
    const seconds = (last - start) / 1000;
    const sha256 = await this.hex(kept);
    // Per MiB too, so that a difference can be located.
    const mibs = [];
    for (let at = 0; at < size; at += 1048576) mibs.push(await this.hex(kept.subarray(at, at + 1048576)));
    return { got, seconds, sha256, mibs };
  },

  async hex(bytes) {
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
    return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
  },

  // Round trips of one byte through `cat` on a raw terminal, in ms.
  async echoes(channel, n, phase) {
    const samples = [];
    for (let i = 0; i < n; i++) {
      if (channel.readyState !== "open") throw new Error(`echo pane closed after ${i} echoes ${phase}`);
      const byte = new Uint8Array([97 + (i % 26)]);
      const echoed = new Promise((resolve, reject) => {
        channel.onmessage = (e) => {
          if (e.data.byteLength > 0) resolve(new Uint8Array(e.data));
        };
        channel.onclose = () => reject(new Error(`echo pane closed after ${i} echoes ${phase}`));
      });
      const start = performance.now();
      channel.send(byte);
      const got = await echoed;
      samples.push(performance.now() - start);
      if (got.length !== 1 || got[0] !== byte[0]) throw new Error(`echo: sent ${byte[0]}, got ${Array.from(got)}`);
      // Keystrokes, not a flood: 5 ms apart, as webexec-bench types.
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    return samples.sort((a, b) => a - b);
  },

  // Idle echoes, then echoes while a second pane streams the file in a loop.
  async latency(pc, file, n) {
    const echo = await this.openPane(pc, "24x80,sh,-c,stty raw -echo; echo ready; exec cat");
    let seen = "";
    await new Promise((resolve) => {
      echo.onmessage = (e) => {
        seen += new TextDecoder().decode(e.data);
        if (seen.includes("ready\r\n") || seen.includes("ready\n")) resolve();
      };
    });
    const idle = await this.echoes(echo, n, "idle");
    // The load stops itself (its whole process group) on a byte of input,
    // rather than running on detached once this page is gone.
    const bulk = await this.openPane(pc, `sh,-c,while :; do cat ${file}; done & head -c 1 >/dev/null; kill 0`);
    let streamed = 0;
    bulk.onmessage = (e) => {
      streamed += e.data.byteLength;
    };
    const bulkClosed = new Promise((resolve) => (bulk.onclose = resolve));
    await new Promise((resolve) => setTimeout(resolve, 300));
    const before = streamed;
    const start = performance.now();
    const loaded = await this.echoes(echo, n, "under load");
    const rate = (streamed - before) / 1048576 / ((performance.now() - start) / 1000);
    bulk.send(new Uint8Array([113]));
    echo.close();
    await Promise.race([bulkClosed, new Promise((resolve) => setTimeout(resolve, 10000))]);
    return { idle, loaded, rate };
  },
};

const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor((sorted.length - 1) * q))];
const latencyLine = (label, s) =>
  `chromium echo ${label}: p50 ${quantile(s, 0.5).toFixed(2)} ms, p99 ${quantile(s, 0.99).toFixed(2)} ms, max ${s[s.length - 1].toFixed(2)} ms (n=${s.length})`;

let intact = 0;
try {
  const page = await browser.newPage();
  page.on("pageerror", (err) => console.error("page error:", err.message));
  await page.goto(base);
  await page.evaluate(`window.bench = { ${Object.entries(inPage).map(([k, f]) => f.toString()).join(",\n")} }`);
  await page.evaluate(
    ([token, relay]) => window.bench.connect(token, relay).then((pc) => (window.bench.pc = pc)),
    [token, relay],
  );
  const speeds = [];
  for (let run = 1; run <= runs; run++) {
    const r = await page.evaluate(([file, size]) => window.bench.output(window.bench.pc, file, size), [file, size]);
    const ok = r.got === size && r.sha256 === expected;
    if (ok) intact++;
    else {
      const bad = r.mibs.findIndex((h, i) => h !== expectedMibs[i]);
      console.log(`chromium output: run ${run}: first MiB that differs: ${bad} (of ${r.mibs.length})`);
    }
    const speed = r.got / 1048576 / r.seconds;
    speeds.push(speed);
    console.log(
      `chromium output: run ${run}: ${r.got} of ${size} bytes in ${r.seconds.toFixed(2)} s = ${speed.toFixed(1)} MiB/s, sha-256 ${r.sha256 === expected ? "ok" : "DIFFERS"}`,
    );
  }
  speeds.sort((a, b) => a - b);
  console.log(
    `chromium output: median ${quantile(speeds, 0.5).toFixed(1)} MiB/s (runs ${speeds[0].toFixed(1)}-${speeds[speeds.length - 1].toFixed(1)}), every byte intact in ${intact} of ${runs} runs`,
  );
  if (echoes > 0) {
    const l = await page.evaluate(([file, n]) => window.bench.latency(window.bench.pc, file, n), [file, echoes]);
    console.log(latencyLine("idle", l.idle));
    console.log(`${latencyLine("under load", l.loaded)}; the other pane streamed ${l.rate.toFixed(1)} MiB/s`);
  }
  await page.evaluate(() => window.bench.pc.close());
} finally {
  await browser.close();
}
process.exit(intact === runs ? 0 : 1);
