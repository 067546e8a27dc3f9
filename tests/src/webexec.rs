//! A webexec client for the tests and the benchmark: the `webrtc` crate as
//! the peer, over real UDP on loopback, signaling over real HTTP.

#![allow(clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceCandidateInit, RTCIceGatheringState, RTCIceServer, RTCIceTransportPolicy,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState, RTCSessionDescription, SettingEngineBuilder,
};

/// How the client signals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signaling {
    /// The daemon's unix socket (the ssh flow), as `webexec-server accept`
    /// uses it: base64 offer in, base64 answer out.
    Daemon(webexec_server::daemon::Paths),
    /// `POST /offer` with the full offer (candidates inside).
    Offer,
    /// `POST /offer` without candidates, then each trickled with `PATCH`.
    Trickle,
    /// Seed `POST /connect`, JSON body with a base64 offer.
    ConnectJson,
    /// Seed `POST /connect`, the offer as base64 text.
    ConnectText,
}

/// Why connecting failed.
#[derive(Debug)]
pub enum ConnectError {
    /// The server answered with this status and body.
    Http(u16, String),
    /// Anything else.
    Other(String),
}

struct Handler {
    channels: mpsc::UnboundedSender<Arc<dyn DataChannel>>,
    gathered: watch::Sender<bool>,
    candidates: mpsc::UnboundedSender<RTCIceCandidateInit>,
    connected: watch::Sender<bool>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.gathered.send_replace(true);
        }
    }

    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(init) = event.candidate.to_json() {
            let _ = self.candidates.send(init);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        if state == RTCPeerConnectionState::Connected {
            self.connected.send_replace(true);
        }
    }

    async fn on_data_channel(&self, dc: Arc<dyn DataChannel>) {
        let _ = self.channels.send(dc);
    }
}

/// A TURN server and credentials for it.
#[derive(Debug, Clone)]
pub struct Relay {
    /// `turn:host:port?transport=udp`.
    pub url: String,
    /// The user name (REST API: `expiry:user`).
    pub username: String,
    /// The credential.
    pub credential: String,
}

/// A connected client.
pub struct Client {
    pc: Arc<dyn PeerConnection>,
    /// The `%` channel, opened before the offer (as Terminal7 does).
    pub control: Control,
    server_channels: mpsc::UnboundedReceiver<Arc<dyn DataChannel>>,
    /// Where candidates are trickled to (`Signaling::Trickle` only).
    pub location: Option<String>,
    /// Wakes a relayed connection's driver (see `connect_inner`).
    _pump: Option<AbortOnDrop>,
}

/// A task ended with its owner.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to the server at `addr` with `token` (as a bearer header,
    /// when given).
    pub async fn connect(
        addr: SocketAddr,
        token: Option<&str>,
        signaling: &Signaling,
    ) -> Result<Client, ConnectError> {
        Self::connect_with_headers(addr, token, signaling, &[]).await
    }

    /// [`Client::connect`], the signaling requests carrying `headers` too
    /// (`Origin`, `Host`: what a browser would send).
    pub async fn connect_with_headers(
        addr: SocketAddr,
        token: Option<&str>,
        signaling: &Signaling,
        headers: &[(&str, &str)],
    ) -> Result<Client, ConnectError> {
        crate::tls::install_provider();
        let base = format!("http://{addr}");
        Self::connect_via(&base, reqwest::Client::new(), token, signaling, headers).await
    }

    /// [`Client::connect_with_headers`] with signaling at `base`
    /// (`https://127.0.0.1:PORT` for a server with TLS) through `http`.
    pub async fn connect_via(
        base: &str,
        http: reqwest::Client,
        token: Option<&str>,
        signaling: &Signaling,
        headers: &[(&str, &str)],
    ) -> Result<Client, ConnectError> {
        Self::connect_inner(base, http, token, signaling, headers, None).await
    }

    /// Connects through the TURN server `relay` only (ICE transport policy
    /// "relay", as a browser told so): what a host behind NAT is reached by.
    pub async fn connect_relayed(
        base: &str,
        token: &str,
        relay: &Relay,
    ) -> Result<Client, ConnectError> {
        crate::tls::install_provider();
        let http = reqwest::Client::new();
        Self::connect_inner(base, http, Some(token), &Signaling::Offer, &[], Some(relay)).await
    }

    async fn connect_inner(
        base: &str,
        http: reqwest::Client,
        token: Option<&str>,
        signaling: &Signaling,
        headers: &[(&str, &str)],
        relay: Option<&Relay>,
    ) -> Result<Client, ConnectError> {
        let configuration = match relay {
            Some(relay) => RTCConfigurationBuilder::new()
                .with_ice_servers(vec![RTCIceServer {
                    urls: vec![relay.url.clone()],
                    username: relay.username.clone(),
                    credential: relay.credential.clone(),
                }])
                .with_ice_transport_policy(RTCIceTransportPolicy::Relay)
                .build(),
            None => RTCConfigurationBuilder::new().build(),
        };
        let other = |e: &dyn std::fmt::Display| ConnectError::Other(e.to_string());
        let (channels_tx, server_channels) = mpsc::unbounded_channel();
        let (gathered_tx, mut gathered) = watch::channel(false);
        let (cand_tx, mut candidates) = mpsc::unbounded_channel();
        let (connected_tx, mut connected) = watch::channel(false);
        let pc = PeerConnectionBuilder::new()
            .with_configuration(configuration)
            .with_handler(Arc::new(Handler {
                channels: channels_tx,
                gathered: gathered_tx,
                candidates: cand_tx,
                connected: connected_tx,
            }))
            .with_setting_engine(
                SettingEngineBuilder::new()
                    // A browser-sized receive window (Chromium's is a few MiB).
                    .with_sctp_max_receive_buffer_size(4 << 20)
                    // Chromium paces its first connectivity checks ~50 ms
                    // apart; the crate's default is 200 ms.
                    .with_ice_connection_attempts(Some(Duration::from_millis(50)), None)
                    // Loopback only: nothing multicast leaves the tests.
                    .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
                    .build(),
            )
            .with_udp_addrs(vec!["127.0.0.1:0".to_owned()])
            .build()
            .await
            .map_err(|e| other(&e))?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);
        let control = pc
            .create_data_channel("%", None)
            .await
            .map_err(|e| other(&e))?;
        let offer = pc.create_offer(None).await.map_err(|e| other(&e))?;
        let bare_sdp = offer.sdp.clone();
        pc.set_local_description(offer)
            .await
            .map_err(|e| other(&e))?;
        if signaling != &Signaling::Trickle {
            let _ = tokio::time::timeout(Duration::from_secs(5), gathered.wait_for(|d| *d)).await;
        }
        let sdp = match signaling {
            Signaling::Trickle => bare_sdp,
            _ => pc
                .local_description()
                .await
                .map(|d| d.sdp)
                .unwrap_or_default(),
        };
        let with_token = |req: reqwest::RequestBuilder| {
            let req = headers
                .iter()
                .fold(req, |req, (name, value)| req.header(*name, *value));
            match token {
                Some(t) => req.bearer_auth(t),
                None => req,
            }
        };
        let mut trickle_to = None;
        let answer = match signaling {
            Signaling::Offer | Signaling::Trickle => {
                let response = with_token(http.post(format!("{base}/offer")))
                    .header("content-type", "application/sdp")
                    .body(sdp)
                    .send()
                    .await
                    .map_err(|e| other(&e))?;
                let status = response.status().as_u16();
                let location = response
                    .headers()
                    .get("location")
                    .and_then(|l| l.to_str().ok())
                    .map(str::to_owned);
                let body = response.text().await.map_err(|e| other(&e))?;
                if status != 201 {
                    return Err(ConnectError::Http(status, body));
                }
                if signaling == &Signaling::Trickle {
                    let location = location.ok_or_else(|| other(&"no Location"))?;
                    trickle_to = Some(location.clone());
                    let http = http.clone();
                    tokio::spawn(async move {
                        while let Some(c) = candidates.recv().await {
                            let body = json!({
                                "candidate": c.candidate,
                                "sdpMid": c.sdp_mid,
                                "sdpMLineIndex": c.sdp_mline_index,
                                "usernameFragment": c.username_fragment,
                            });
                            let _ = http
                                .patch(&location)
                                .header("content-type", "application/json")
                                .body(body.to_string())
                                .send()
                                .await;
                        }
                    });
                }
                body
            }
            Signaling::Daemon(paths) => {
                use base64::Engine as _;
                let offer_json = json!({"type": "offer", "sdp": sdp}).to_string();
                let offer = base64::engine::general_purpose::STANDARD.encode(offer_json);
                let answer = webexec_server::daemon::accept(paths, &offer)
                    .await
                    .map_err(|e| other(&e))?;
                decode_answer(&answer)?
            }
            Signaling::ConnectJson | Signaling::ConnectText => {
                use base64::Engine as _;
                let offer_json = json!({"type": "offer", "sdp": sdp}).to_string();
                let offer = base64::engine::general_purpose::STANDARD.encode(offer_json);
                let body = match signaling {
                    Signaling::ConnectJson => {
                        json!({"fingerprint": "", "api_version": 1, "offer": offer}).to_string()
                    }
                    _ => offer,
                };
                let response = with_token(http.post(format!("{base}/connect")))
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| other(&e))?;
                let status = response.status().as_u16();
                let body = response.text().await.map_err(|e| other(&e))?;
                if status != 200 {
                    return Err(ConnectError::Http(status, body));
                }
                decode_answer(&body)?
            }
        };
        let answer = RTCSessionDescription::answer(answer).map_err(|e| other(&e))?;
        pc.set_remote_description(answer)
            .await
            .map_err(|e| other(&e))?;
        // This stack queues what it sends on finishing a handshake step
        // (its SCTP INIT once DTLS completes, the channel opens once SCTP
        // is up) after that turn's writes went out, and sends it on its
        // next timer, ~200 ms later. Browsers send at once: wake the driver
        // every few milliseconds until the control channel is open, so the
        // figures measure the server. Setting the threshold to its current
        // value changes nothing but wakes the driver.
        let (open_tx, open_rx) = watch::channel(false);
        let nudge = control.clone();
        tokio::spawn(async move {
            if connected.wait_for(|c| *c).await.is_err() {
                return;
            }
            let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
            while !*open_rx.borrow() && tokio::time::Instant::now() < deadline {
                let _ = nudge.set_buffered_amount_low_threshold(0).await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        // Relayed, the stack is slower still: what it sends through a TURN
        // relay (every packet, once the relayed pair is chosen) waits in
        // its relay client for the driver's next turn, since the driver
        // takes that queue out before it hands the relay the turn's
        // writes (webrtc 0.21.1, `driver.rs`, steps 1.b and 1.c). Without
        // a wake-up a keystroke's echo took ~150 ms and output ran at
        // ~1 Mbit/s. Waking it every millisecond while the client lives
        // bounds that at 1 ms, so the figures measure the relay and the
        // server rather than this client's stack; browsers have no such
        // queue.
        let pump = relay.map(|_| {
            let nudge = control.clone();
            AbortOnDrop(tokio::spawn(async move {
                let mut ticks = tokio::time::interval(Duration::from_millis(1));
                loop {
                    ticks.tick().await;
                    let _ = nudge.set_buffered_amount_low_threshold(0).await;
                }
            }))
        });
        let control = ClientChannel::opened(control)
            .await
            .ok_or_else(|| other(&"control channel did not open"))?;
        open_tx.send_replace(true);
        Ok(Client {
            pc,
            control: Control {
                channel: control,
                next_id: 1,
            },
            server_channels,
            location: trickle_to,
            _pump: pump,
        })
    }

    /// Opens a channel labelled `label` and waits until it is open.
    pub async fn open(&self, label: &str) -> ClientChannel {
        self.try_open(label).await.expect("channel did not open")
    }

    /// Opens a channel; `None` when it closed before it opened.
    pub async fn try_open(&self, label: &str) -> Option<ClientChannel> {
        let dc = self.pc.create_data_channel(label, None).await.ok()?;
        ClientChannel::opened(dc).await
    }

    /// Opens one channel per label and waits until all are open. Every
    /// channel takes its stream id before any is open, so none can land on
    /// the id of one the server closes meanwhile: the `webrtc` crate frees
    /// an id as soon as the server's close arrives and reuses it before its
    /// own half of the reset went out, which closes the new channel (a
    /// limitation of that client stack; browsers wait for the reset).
    pub async fn open_all<const N: usize>(&self, labels: [&str; N]) -> [ClientChannel; N] {
        let mut created = Vec::new();
        for label in labels {
            let dc = self.pc.create_data_channel(label, None).await;
            created.push(dc.expect("create data channel"));
        }
        let mut channels = Vec::new();
        for (label, dc) in labels.iter().zip(created) {
            let channel = ClientChannel::opened(dc).await;
            channels.push(channel.unwrap_or_else(|| panic!("{label}: did not open")));
        }
        match channels.try_into() {
            Ok(channels) => channels,
            Err(_) => unreachable!("one channel per label"),
        }
    }

    /// The next channel the server opened, with its label.
    pub async fn server_channel(&mut self) -> (String, ClientChannel) {
        let dc = tokio::time::timeout(Duration::from_secs(10), self.server_channels.recv())
            .await
            .expect("no channel from the server in 10 s")
            .expect("connection gone");
        let label = dc.label().await.unwrap();
        let channel = ClientChannel::opened(dc)
            .await
            .expect("server channel closed");
        (label, channel)
    }

    /// Closes the connection.
    pub async fn close(&self) {
        let _ = self.pc.close().await;
    }
}

/// The SDP of a seed answer: base64 of `{"type":"answer","sdp":..}`.
fn decode_answer(body: &str) -> Result<String, ConnectError> {
    use base64::Engine as _;
    let other = |e: &dyn std::fmt::Display| ConnectError::Other(e.to_string());
    let json = base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .map_err(|e| other(&e))?;
    let desc: Value = serde_json::from_slice(&json).map_err(|e| other(&e))?;
    Ok(desc["sdp"].as_str().unwrap_or_default().to_owned())
}

/// One data channel, client side.
pub struct ClientChannel {
    dc: Arc<dyn DataChannel>,
    /// Messages that came before the channel's `OnOpen`: the `webrtc` crate
    /// hands a channel we opened the server's first message (a pane id)
    /// as soon as SCTP reads it, while the open that the server's ack
    /// caused waits for the driver's next round of events.
    early: std::sync::Mutex<std::collections::VecDeque<Msg>>,
}

impl std::fmt::Debug for ClientChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientChannel").finish_non_exhaustive()
    }
}

/// A received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

impl Msg {
    /// The bytes, whatever the kind.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Msg::Text(t) => t.as_bytes(),
            Msg::Binary(b) => b,
        }
    }
}

impl From<webrtc::data_channel::RTCDataChannelMessage> for Msg {
    fn from(m: webrtc::data_channel::RTCDataChannelMessage) -> Msg {
        if m.is_string {
            Msg::Text(String::from_utf8_lossy(&m.data).into_owned())
        } else {
            Msg::Binary(m.data.to_vec())
        }
    }
}

impl ClientChannel {
    async fn opened(dc: Arc<dyn DataChannel>) -> Option<ClientChannel> {
        let mut early = std::collections::VecDeque::new();
        loop {
            match dc.poll().await {
                Some(DataChannelEvent::OnOpen) => break,
                Some(DataChannelEvent::OnMessage(m)) => early.push_back(Msg::from(m)),
                Some(DataChannelEvent::OnClose) | None if early.is_empty() => return None,
                // Closed right after what it sent: `recv` gives that, then None.
                Some(DataChannelEvent::OnClose) | None => break,
                Some(_) => {}
            }
        }
        Some(ClientChannel {
            dc,
            early: std::sync::Mutex::new(early),
        })
    }

    /// The next message, `None` once closed; panics after 10 s of silence.
    pub async fn recv(&self) -> Option<Msg> {
        tokio::time::timeout(Duration::from_secs(10), self.recv_forever())
            .await
            .expect("nothing received in 10 s")
    }

    /// The next message, `None` once closed, however long it takes.
    pub async fn recv_forever(&self) -> Option<Msg> {
        if let Some(msg) = self.early.lock().unwrap().pop_front() {
            return Some(msg);
        }
        loop {
            match self.dc.poll().await? {
                DataChannelEvent::OnMessage(m) => return Some(Msg::from(m)),
                DataChannelEvent::OnClose => return None,
                _ => {}
            }
        }
    }

    /// Sends text.
    pub async fn send_text(&self, text: &str) {
        self.dc.send_text(text).await.unwrap();
    }

    /// Sends bytes.
    pub async fn send(&self, data: &[u8]) {
        self.dc.send(BytesMut::from(data)).await.unwrap();
    }

    /// Reads output until it contains `needle`; returns all of it.
    pub async fn read_until(&self, needle: &str) -> String {
        let mut seen = Vec::new();
        while !String::from_utf8_lossy(&seen).contains(needle) {
            match self.recv().await {
                Some(m) => seen.extend_from_slice(m.bytes()),
                None => panic!(
                    "channel closed before {needle:?}; got {:?}",
                    String::from_utf8_lossy(&seen)
                ),
            }
        }
        String::from_utf8_lossy(&seen).into_owned()
    }

    /// Reads everything until the channel closes.
    pub async fn read_to_close(&self) -> Vec<u8> {
        let mut seen = Vec::new();
        while let Some(m) = self.recv().await {
            seen.extend_from_slice(m.bytes());
        }
        seen
    }

    /// Closes the channel.
    pub async fn close(&self) {
        let _ = self.dc.close().await;
    }
}

/// The control channel with request ids.
#[derive(Debug)]
pub struct Control {
    /// The channel.
    pub channel: ClientChannel,
    next_id: i64,
}

impl Control {
    /// Sends `{type, args}` and returns the reply to it (ack or nack
    /// envelope), skipping notices.
    pub async fn request(&mut self, kind: &str, args: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({"time": 1, "message_id": id, "type": kind, "args": args});
        self.channel.send_text(&msg.to_string()).await;
        self.reply_to(id).await
    }

    /// Sends raw text and returns the next ack or nack.
    pub async fn raw(&mut self, text: &str) -> Value {
        self.channel.send_text(text).await;
        loop {
            let v = self.next().await;
            if v["type"] == "ack" || v["type"] == "nack" {
                return v;
            }
        }
    }

    async fn reply_to(&mut self, id: i64) -> Value {
        loop {
            let v = self.next().await;
            if (v["type"] == "ack" || v["type"] == "nack") && v["args"]["ref"] == id {
                return v;
            }
        }
    }

    /// The next message of any type.
    pub async fn next(&mut self) -> Value {
        match self.channel.recv().await.expect("control channel closed") {
            // Terminal7 decodes `%` messages with `TextDecoder.decode`, which
            // throws on a string: the server must send binary.
            Msg::Binary(b) => serde_json::from_slice(&b).expect("control message is JSON"),
            Msg::Text(t) => panic!("text on the control channel (Terminal7 cannot read it): {t}"),
        }
    }
}
