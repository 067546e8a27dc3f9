// The webexec demo client: the browser's own WebRTC, today's signaling
// (POST /offer, candidates trickled with PATCH), the `%` control channel,
// and one terminal pane in xterm.js. The pane outlives the page: a reload
// reattaches to it (reconnect_pane) and gets its screen redrawn.
// Every URL is relative to the page, so it works under any base path a
// proxy puts the server at. The ICE servers (STUN, TURN with credentials
// minted for this connection) come from the server; `#relay=1` in the URL
// makes the browser use relayed candidates only (to try a TURN setup).
// `#pane=ID` attaches pane ID instead of the page's last one: in the
// execwire daemon, also a terminal another protocol started (the wsep CLI's
// `--id work` is listed with its number by `GET /panes`). `#view=1` is a
// read-only viewer (a server's --view-token): it attaches the pane, shows
// its output without an input cursor, and sends no keys or resizes (the
// server would refuse them anyway).
"use strict";

const $ = (id) => document.getElementById(id);
const status = (text, error) => {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
};

const params = new URLSearchParams(location.hash.slice(1));
const viewOnly = params.get("view") === "1";
// Cleared once that pane ended or "New pane" was asked for.
let wantedPane = Number(params.get("pane")) || 0;

// A viewer's terminal takes no keys and draws no cursor (the page's CSS
// hides it while focused, `cursorInactiveStyle` when not).
const term = new Terminal(
  viewOnly
    ? { disableStdin: true, cursorBlink: false, cursorInactiveStyle: "none", scrollback: 5000 }
    : { cursorBlink: true, scrollback: 5000 },
);
const fit = new FitAddon.FitAddon();
term.loadAddon(fit);
term.open($("terminal"));
fit.fit();

// For tests and the curious: the live objects.
window.webexec = { term, pc: null, control: null, pane: null, paneId: null, viewOnly };
if (viewOnly) document.body.classList.add("view-only");

$("token").value = params.get("token") || sessionStorage.getItem("webexec-token") || "";
if (params.get("command")) $("command").value = params.get("command");

let messageId = 0;
const pending = new Map(); // message_id -> {resolve, reject}

function request(type, args) {
  const id = ++messageId;
  const msg = { time: Date.now(), message_id: id, type, args: args || {} };
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject });
    window.webexec.control.send(JSON.stringify(msg));
  });
}

// Servers send control messages as binary (the reference does, and
// Terminal7 needs it); older ones sent text. Read both.
const asText = (data) => (typeof data === "string" ? data : new TextDecoder().decode(data));

function onControl(event) {
  let msg;
  try { msg = JSON.parse(asText(event.data)); } catch (e) { return; }
  const args = msg.args || {};
  if (msg.type === "ack" || msg.type === "nack") {
    const waiter = pending.get(args.ref);
    if (!waiter) return;
    pending.delete(args.ref);
    if (msg.type === "ack") waiter.resolve(args.body);
    else waiter.reject(new Error(args.desc || args.description || "refused"));
  }
}

// From "connect" to the pane's first bytes: what a user waits for.
function noteOutput() {
  if (window.webexec.firstOutputMs === undefined) {
    window.webexec.firstOutputMs = performance.now() - window.webexec.connectStart;
  }
}

function attach(channel, id, early) {
  window.webexec.pane = channel;
  window.webexec.paneId = id;
  sessionStorage.setItem("webexec-pane", String(id));
  const show = (data) => term.write(typeof data === "string" ? data : new Uint8Array(data));
  const ended = () => {
    if (window.webexec.pane !== channel) return;
    term.write("\r\n\x1b[2m[pane " + id + " ended]\x1b[0m\r\n");
    sessionStorage.removeItem("webexec-pane");
    if (wantedPane === Number(id)) wantedPane = 0;
    status("pane ended");
  };
  early.messages.forEach(show);
  channel.onmessage = (e) => {
    noteOutput();
    show(e.data);
  };
  channel.onclose = ended;
  status(viewOnly ? "watching pane " + id + " (read-only)" : "pane " + id);
  if (early.closed) ended();
  if (!viewOnly) term.focus();
}

term.onData((data) => {
  if (viewOnly) return;
  const pane = window.webexec.pane;
  if (pane && pane.readyState === "open") pane.send(new TextEncoder().encode(data));
});

term.onResize(({ rows, cols }) => {
  const { control, paneId } = window.webexec;
  if (!viewOnly && control && control.readyState === "open" && paneId) {
    request("resize", { pane_id: paneId, sx: cols, sy: rows }).catch(() => {});
  }
});
window.addEventListener("resize", () => fit.fit());

async function signal(pc, token) {
  // Candidates found before the server said where to send them wait here.
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
  const response = await fetch("offer", {
    method: "POST",
    headers: { "Content-Type": "application/sdp", Authorization: "Bearer " + token },
    body: pc.localDescription.sdp,
  });
  const body = await response.text();
  if (response.status !== 201) throw new Error(response.status + " " + body.trim());
  await pc.setRemoteDescription({ type: "answer", sdp: body });
  location = response.headers.get("Location");
  if (location) early.splice(0).forEach(trickle);
}

async function connect() {
  const token = $("token").value.trim();
  sessionStorage.setItem("webexec-token", token);
  if (window.webexec.pc) window.webexec.pc.close();
  status("connecting…");
  window.webexec.connectStart = performance.now();
  window.webexec.firstOutputMs = undefined;
  const ice = await fetch("ice-servers", { headers: { Authorization: "Bearer " + token } });
  if (!ice.ok) throw new Error(ice.status + " " + (await ice.text()).trim());
  const { iceServers } = await ice.json();
  const pc = new RTCPeerConnection({
    iceServers,
    iceTransportPolicy: params.get("relay") === "1" ? "relay" : "all",
  });
  window.webexec.pc = pc;
  const control = pc.createDataChannel("%");
  window.webexec.control = control;
  control.binaryType = "arraybuffer";
  control.onmessage = onControl;
  // Channels the server opens answer add_pane/reconnect_pane: "<ref>:<pane>".
  const opened = new Map();
  // The server may send output before the ack that names the channel
  // arrives: keep it until the channel is attached.
  pc.ondatachannel = (e) => {
    const channel = e.channel;
    const [ref, id] = channel.label.split(":");
    const early = { messages: [], closed: false };
    channel.binaryType = "arraybuffer";
    channel.onmessage = (m) => {
      noteOutput();
      early.messages.push(m.data);
    };
    channel.onclose = () => { early.closed = true; };
    opened.set(Number(ref), { channel, id: Number(id), early });
  };
  pc.onconnectionstatechange = () => {
    if (pc.connectionState === "failed" || pc.connectionState === "disconnected") {
      status("connection " + pc.connectionState, true);
    }
  };
  await signal(pc, token);
  await new Promise((resolve, reject) => {
    control.onopen = resolve;
    control.onclose = () => reject(new Error("control channel closed"));
  });
  const rows = term.rows, cols = term.cols;
  const previous = wantedPane || Number(sessionStorage.getItem("webexec-pane")) || 0;
  let body;
  let ref;
  if (previous) {
    ref = messageId + 1;
    body = await request("reconnect_pane", { id: previous }).catch(() => null);
    if (body !== null && !viewOnly) {
      await request("resize", { pane_id: previous, sx: cols, sy: rows }).catch(() => {});
    }
  }
  if (viewOnly && (!previous || body === null)) {
    throw new Error(previous ? "no pane " + previous : "read-only: name a pane with #pane=ID");
  }
  if (!previous || body === null) {
    term.reset();
    const text = $("command").value.trim() || "*";
    const command = text === "*" ? ["*"] : text.split(",");
    ref = messageId + 1;
    body = await request("add_pane", { command, rows, cols, parent: 0 });
  }
  const pane = opened.get(ref);
  if (!pane) throw new Error("the server opened no channel for the pane");
  attach(pane.channel, pane.id, pane.early);
}

$("connect").onclick = () => connect().catch((e) => status(e.message, true));
$("new-pane").onclick = () => {
  sessionStorage.removeItem("webexec-pane");
  wantedPane = 0;
  connect().catch((e) => status(e.message, true));
};
if ($("token").value) connect().catch((e) => status(e.message, true));
