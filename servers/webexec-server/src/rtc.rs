//! The WebRTC stack behind the server, and the only module that names the
//! `webrtc` crate.
//!
//! The rest of the server sees three words: [`Rtc`] answers an offer,
//! [`Peer`] is one answered connection (trickled candidates, server-opened
//! channels, close: the peer module's [`Connection`]), and
//! [`RtcTransport`] is one data channel as an exec-core [`Transport`]
//! (ordered messages in, bounded sends out, a close that waits for what
//! was sent). Swapping the WebRTC implementation means rewriting this file
//! only.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::BytesMut;
use exec_core::{CloseReason, Message, Transport, TransportError, TransportRx, TransportTx};
use rtc::ice::mdns::MulticastDnsMode;
use rtc::peer_connection::transport::RTCDtlsRole;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCCertificate,
    RTCConfigurationBuilder, RTCIceCandidateInit, RTCIceGatheringState, RTCIceServer,
    RTCPeerConnectionState, RTCSessionDescription, SettingEngineBuilder, crypto,
};

use crate::Error;
use crate::peer::{Accepted, Connection};

/// How long answering waits for local candidates (the reference's 5 s):
/// host candidates come at once, a STUN or TURN server may never answer.
const GATHER_TIMEOUT: Duration = Duration::from_secs(5);

/// Bytes a channel may have handed to SCTP and not yet had acknowledged
/// before a send waits. A send that starts below it may take the channel
/// over by one message, so with output sent in [`STREAM_PIECE`]s a channel
/// has at most 48 KiB in flight.
///
/// That bound is the browser's: Chromium reads WebRTC's UDP through one
/// socket of its network service with a 128 KiB receive buffer (`ss -m`:
/// `rb131072`), room for about 56 of our 1191-byte SCTP packets. What
/// arrives beyond that while the thread reading it waits for a core is
/// dropped, and SCTP takes each loss for congestion: a fast retransmit
/// halves its window, and a lost retransmission waits for the
/// retransmission timer (never under 1 s in this stack), then for
/// Chromium's delayed acknowledgement (200 ms). Chromium acknowledges
/// within 1-2 ms otherwise, so the window never waited on that.
///
/// Measured with webexec-bench on this 2-core machine, old and new server
/// alternating: with 128 KiB plus a 64 KiB message, Chromium's socket
/// dropped 1000-1500 datagrams per benchmark (3 x 100 MiB and the echo
/// figures), SCTP halved its window every ~60 ms and stalled ~0.9 s a few
/// times per 100 MiB: 11-21 MiB/s, echo under load p50 8-10 ms, max ~1 s.
/// With at most 48 KiB: no drops, 21-31 MiB/s (31-36 when the machine was
/// quiet), echo under load p50 1.4-2.1 ms. 64 KiB still dropped a few when
/// the machine was loaded. The `webrtc` crate's client, which swung
/// between 31 and 165 MiB/s with the old window (its own socket overflowed
/// too), gets a steady ~120 MiB/s.
///
/// With [`LOOPBACK_SCTP_MTU`] (1920-byte packets, which the kernel
/// charges to the socket as ~4 KiB each against ~2 KiB for 1191) the same
/// 48 KiB is ~26 packets: `ss -m` on Chromium's socket during a 100 MiB
/// `cat` showed at most ~48 KiB of its 128 KiB taken. The kernel's
/// receive-buffer error counter (machine-wide, other engineers' tests
/// running) moved by 4-8 in 4 of ~16 such runs, and by 80 in one of ~8
/// runs with 1191: no worse than before, not proof of none.
///
/// It is also what a keystroke's echo on one pane may queue behind (all
/// panes of a peer share one association), and, over a path with a round
/// trip of R, a pane's output is at most 48 KiB per R (1.6 MiB/s at
/// 30 ms; 192 KiB per R before).
const SEND_BUFFER: usize = 16 * 1024;

/// Largest message a pane's output is sent in ([`Connection::OUTPUT_PIECE`]
/// of [`Peer`]). With [`SEND_BUFFER`] it bounds what a channel has in
/// flight (16 + 32 KiB). The same bound split
/// the other way round (32 KiB buffer, 16 KiB messages) cost more per byte,
/// in wakeups and messages: in the same runs the server's CPU per 100 MiB
/// into Chromium was 30-50 % higher and the `webrtc` crate's client got
/// 49-54 MiB/s where this split got 66-85.
const STREAM_PIECE: usize = 32 * 1024;

/// How long a closing channel waits for the client to acknowledge any
/// more of what was sent before it gives up on the rest, once the
/// connection is no longer connected (ICE saw no answer for 3 s).
const LINGER: Duration = Duration::from_secs(2);

/// How long a closing channel waits without any acknowledgement while the
/// connection is still connected. A live client that is slow (100 peers'
/// worth of panes on two loaded cores in `reliability-bench load`) went
/// 2 s without acknowledging and lost its panes' last output to the
/// 2 s [`LINGER`] alone: 1-24 panes a run. A client that stopped is no
/// longer connected 3 s later; this bounds one that answers ICE but
/// never reads.
const STALLED: Duration = Duration::from_secs(30);

/// Least time between our opening a channel and closing it. A browser
/// makes the script object for a channel its peer opened on its main thread;
/// Chromium discards the messages it holds for that channel when the close
/// arrives first, so a pane that printed and exited at once would show
/// nothing. Channels the client opened have their object already.
const OPENED_GRACE: Duration = Duration::from_millis(500);

/// Least time between a client's opening a channel and our closing it.
/// The `webrtc` crate as a client (Rust services, our tests) reports its
/// own channel open only on its driver's next round of events; a message
/// and the close that follow at once can both be handled before that, and
/// then the message is lost (a command that printed and exited at once,
/// seen as a pane with no id about once in ten runs of a loaded test).
/// Browsers are not affected; 100 ms costs a command's close no more.
const ACCEPTED_GRACE: Duration = Duration::from_millis(100);

/// The size of the SCTP packets we send when the server's UDP is on
/// loopback (every client on this machine), instead of the stack's 1191.
///
/// Chromium's cost of receiving is per packet (a datagram read by its
/// network service and handed to the page's process, a DTLS record, an
/// SCTP parse, a share of a SACK), and so is the server's (a DTLS record
/// and a datagram each). Measured with headless Chromium 156 against this
/// server on the project's 2-core machine, 1191 and 1920 alternating, 100
/// MiB `cat` each: Chromium's processes spent ~4.3 CPU-seconds per 100
/// MiB with 1191 and ~3.3 with 1920, the server 1.1 and 0.9; the `webrtc`
/// crate's client and server together 1.30-1.35 and 0.99-1.00.
///
/// It cannot be larger, for two clients:
/// - Chromium reads each DTLS record into a 2048-byte buffer: with SCTP
///   packets of 2049 bytes or more it delivers nothing at all (tried: a
///   100 MiB `cat` got 0 bytes, the channel silently stalled).
/// - The `webrtc` crate reads datagrams into 2000 bytes where the kernel
///   offers no UDP GRO: a packet plus its DTLS record (at most 65 bytes
///   more, with AES-CBC; 37 with the AES-GCM browsers pick) must fit.
///
/// Only on loopback and without STUN/TURN servers: a datagram of ~2 KB is
/// more than an Ethernet frame, and the stack sends with "don't
/// fragment". Paths off this machine keep the stack's 1191, sized for the
/// smallest tunnels and TURN over IPv6; a relay's included, even one on
/// this machine reached at a loopback address: a TURN server hands out
/// relay addresses on its public side and carries the packets on from
/// there (a server on loopback behind a local coturn, for a remote
/// Terminal7, is reached through it alone).
const LOOPBACK_SCTP_MTU: u32 = 1920;

// The bounds above, checked when building: Chromium's record buffer and
// the `webrtc` crate's datagram buffer with the largest DTLS overhead.
const _: () = assert!(LOOPBACK_SCTP_MTU <= 2048 && LOOPBACK_SCTP_MTU + 65 <= 2000);

/// The SCTP receive window we offer: uploads (`cat > file` from the
/// client) are paced by it.
const SCTP_RECEIVE_BUFFER: u32 = 4 * 1024 * 1024;

/// A STUN or TURN server handed to ICE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceServer {
    /// `stun:host:port`, `turn:host:port?transport=udp`, ...
    pub url: String,
    /// TURN user name.
    pub username: String,
    /// TURN credential.
    pub credential: String,
}

impl IceServer {
    /// Parses `URL` or `turn:USER:PASS@host:port` (credentials before the
    /// host, as ssh and many TURN tools write them).
    pub fn parse(text: &str) -> Result<IceServer, Error> {
        let (scheme, rest) = text
            .split_once(':')
            .ok_or_else(|| Error::Config(format!("ICE server {text:?}: no scheme")))?;
        if !matches!(scheme, "stun" | "stuns" | "turn" | "turns") {
            return Err(Error::Config(format!(
                "ICE server {text:?}: scheme must be stun, stuns, turn or turns"
            )));
        }
        let (username, credential, host) = match rest.rsplit_once('@') {
            Some((creds, host)) => {
                let (user, pass) = creds.split_once(':').unwrap_or((creds, ""));
                (user.to_owned(), pass.to_owned(), host)
            }
            None => (String::new(), String::new(), rest),
        };
        if host.is_empty() {
            return Err(Error::Config(format!("ICE server {text:?}: no host")));
        }
        Ok(IceServer {
            url: format!("{scheme}:{host}"),
            username,
            credential,
        })
    }
}

/// The UDP ports peer connections bind, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// Lowest port.
    pub min: u16,
    /// Highest port.
    pub max: u16,
}

impl PortRange {
    /// Parses `MIN-MAX`; `0-0` means any free port.
    pub fn parse(text: &str) -> Result<PortRange, Error> {
        let bad = || Error::Config(format!("UDP port range {text:?}: expected MIN-MAX"));
        let (min, max) = text.split_once('-').ok_or_else(bad)?;
        let range = PortRange {
            min: min.trim().parse().map_err(|_| bad())?,
            max: max.trim().parse().map_err(|_| bad())?,
        };
        if range.min > range.max || (range.min == 0) != (range.max == 0) {
            return Err(bad());
        }
        Ok(range)
    }

    /// Any free port.
    pub const ANY: PortRange = PortRange { min: 0, max: 0 };
}

/// What every peer connection is built with.
#[derive(Debug, Clone)]
pub struct RtcConfig {
    /// STUN/TURN servers.
    pub ice_servers: Vec<IceServer>,
    /// The address peer connections bind UDP on: a concrete address binds
    /// that interface only; the unspecified address binds every interface.
    pub udp_ip: IpAddr,
    /// The UDP ports to use.
    pub udp_ports: PortRange,
    /// A TURN secret to mint time-limited credentials with, for every
    /// connection: the server's own and those handed to the demo page.
    pub turn: Option<crate::TurnSecret>,
}

impl RtcConfig {
    /// The ICE servers to use now: the configured ones, and the TURN
    /// relays with credentials minted at this moment.
    pub fn ice_servers_now(&self) -> Vec<IceServer> {
        let mut servers = self.ice_servers.clone();
        if let Some(turn) = &self.turn {
            servers.extend(turn.mint(SystemTime::now()));
        }
        servers
    }
}

/// Answers offers. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Rtc {
    config: Arc<RtcConfig>,
    certificate: RTCCertificate,
    /// Where the next port search starts, so peers spread over the range.
    next_port: Arc<std::sync::atomic::AtomicU32>,
    /// Set when peers do not resolve the `.local` names browsers put in
    /// candidates to hide their addresses (resolving them takes multicast
    /// queries on the LAN). A server on loopback has no LAN to ask, and
    /// must not send multicast at all: its clients are on this machine
    /// and offer their real addresses (Chromium with
    /// `--disable-features=WebRtcHideLocalIpsWithMdns`, the webrtc
    /// crate). Elsewhere it is set once the host could not join the mDNS
    /// group ([`Rtc::build`]).
    mdns_off: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for Rtc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rtc")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Rtc {
    /// A stack whose DTLS identity is `certificate`, or a fresh one made
    /// for this process when `None`.
    pub(crate) fn new(config: RtcConfig, certificate: Option<Certificate>) -> Result<Rtc, Error> {
        let certificate = match certificate {
            Some(Certificate(certificate)) => certificate,
            None => generate_certificate()?,
        };
        Ok(Rtc {
            mdns_off: Arc::new(std::sync::atomic::AtomicBool::new(
                config.udp_ip.is_loopback(),
            )),
            config: Arc::new(config),
            certificate,
            next_port: Arc::new(std::sync::atomic::AtomicU32::new(0)),
        })
    }

    /// The ICE servers for a connection made now (see
    /// [`RtcConfig::ice_servers_now`]).
    pub(crate) fn ice_servers(&self) -> Vec<IceServer> {
        self.config.ice_servers_now()
    }

    /// The server's certificate fingerprint (`sha-256 AA:BB:...`).
    pub(crate) fn fingerprint(&self) -> String {
        fingerprint(&self.certificate)
    }

    /// Answers `offer_sdp`: the answer (with the server's candidates, ICE
    /// gathering done or timed out), the connection, and the channels the
    /// client opens, in the order they open.
    pub(crate) async fn answer(
        &self,
        offer_sdp: String,
    ) -> Result<
        (
            String,
            Peer,
            mpsc::UnboundedReceiver<Accepted<RtcTransport>>,
        ),
        Error,
    > {
        let offer =
            RTCSessionDescription::offer(offer_sdp).map_err(|e| Error::Offer(e.to_string()))?;
        let (channels_tx, channels_rx) = mpsc::unbounded_channel();
        let (gathered_tx, mut gathered) = watch::channel(false);
        let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
        let handler = Arc::new(Handler {
            channels: channels_tx,
            gathered: gathered_tx,
            state: state_tx,
        });
        let pc = self.build(handler).await?;
        let result = async {
            pc.set_remote_description(offer)
                .await
                .map_err(|e| Error::Offer(e.to_string()))?;
            let answer = pc.create_answer(None).await.map_err(Error::rtc)?;
            pc.set_local_description(answer).await.map_err(Error::rtc)?;
            let _ = tokio::time::timeout(GATHER_TIMEOUT, gathered.wait_for(|done| *done)).await;
            pc.local_description()
                .await
                .map(|d| d.sdp)
                .ok_or_else(|| Error::Rtc("no local description".into()))
        }
        .await;
        match result {
            Ok(sdp) => Ok((sdp, Peer { pc, state }, channels_rx)),
            Err(e) => {
                let _ = pc.close().await;
                Err(e)
            }
        }
    }

    /// Builds a peer connection on a port of the configured range (trying
    /// each in turn from a rotating start until one binds).
    async fn build(&self, handler: Arc<Handler>) -> Result<Arc<dyn PeerConnection>, Error> {
        let PortRange { min, max } = self.config.udp_ports;
        let span = u32::from(max - min) + 1;
        let start = self
            .next_port
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let attempts = if min == 0 { 1 } else { span };
        let mut last = None;
        // A relay candidate of our own, when TURN is configured, reaches
        // clients whose own relay or NAT the host candidates cannot.
        let ice_servers: Vec<RTCIceServer> = self
            .ice_servers()
            .into_iter()
            .map(|s| RTCIceServer {
                urls: vec![s.url],
                username: s.username,
                credential: s.credential,
            })
            .collect();
        // A relay (a TURN server on this machine, say) carries the
        // packets on to paths off it: keep the stack's size then.
        let relayed = !self.config.ice_servers.is_empty() || self.config.turn.is_some();
        let build = |port: u16, mdns: MulticastDnsMode| {
            let mut settings = SettingEngineBuilder::new()
                // The reference: 500 ms keep-alives, disconnected
                // after 3 s, failed after 6 s.
                .with_ice_timeouts(
                    Some(Duration::from_secs(3)),
                    Some(Duration::from_secs(6)),
                    Some(Duration::from_millis(500)),
                )
                .with_include_loopback_candidate(self.config.udp_ip.is_loopback())
                .with_multicast_dns_mode(mdns)
                .with_sctp_max_receive_buffer_size(SCTP_RECEIVE_BUFFER)
                // Answer `setup:passive`, so the client is the DTLS
                // client and opens SCTP. As DTLS client the stack
                // queues its SCTP INIT while handling events, after
                // that turn's writes went out, and sends it ~200 ms
                // later on its next timer; as server every step
                // answers a packet and goes out at once (Chromium:
                // connect to first output p50 200 -> 150 ms).
                .with_answering_dtls_role(RTCDtlsRole::Server);
            if self.config.udp_ip.is_loopback() && !relayed {
                settings = settings.with_sctp_mtu(LOOPBACK_SCTP_MTU);
            }
            PeerConnectionBuilder::new()
                .with_configuration(
                    RTCConfigurationBuilder::new()
                        .with_ice_servers(ice_servers.clone())
                        .with_certificates(vec![self.certificate.clone()])
                        .build(),
                )
                .with_setting_engine(settings.build())
                .with_handler(handler.clone())
                .with_data_channel_send_buffer_limit(SEND_BUFFER)
                .with_udp_addrs(vec![SocketAddr::new(self.config.udp_ip, port)])
                .build()
        };
        use std::sync::atomic::Ordering::Relaxed;
        for i in 0..attempts {
            let port = if min == 0 {
                0
            } else {
                // `(start + i) % span` < span <= 65536, and min + it <= max.
                min + u16::try_from((start.wrapping_add(i)) % span).unwrap_or(0)
            };
            if self.mdns_off.load(Relaxed) {
                match build(port, MulticastDnsMode::Disabled).await {
                    Ok(pc) => return Ok(Arc::new(pc)),
                    Err(e) => last = Some(e),
                }
                continue;
            }
            // Resolving `.local` names takes the mDNS group, which a host
            // without a multicast route (no default route: a fleet host on
            // a private network) cannot join, and the stack then fails to
            // build at all. When the same port builds without mDNS, that
            // was the cause: go on without it, and say so once.
            let error = match build(port, MulticastDnsMode::QueryOnly).await {
                Ok(pc) => return Ok(Arc::new(pc)),
                Err(e) => e,
            };
            match build(port, MulticastDnsMode::Disabled).await {
                Ok(pc) => {
                    if !self.mdns_off.swap(true, Relaxed) {
                        tracing::warn!(
                            "mDNS off: a peer connection with it failed ({error}), one \
                             without it did not; clients' .local candidates will not resolve"
                        );
                    }
                    return Ok(Arc::new(pc));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(Error::Rtc(format!(
            "no peer connection on {} (UDP ports {min}-{max}): {}",
            self.config.udp_ip,
            last.map(|e| e.to_string()).unwrap_or_default()
        )))
    }
}

/// `certificate`'s fingerprint, `sha-256 AA:BB:...`.
fn fingerprint(certificate: &RTCCertificate) -> String {
    let fingerprints = crypto::default_provider()
        .ok()
        .and_then(|p| certificate.get_fingerprints(p.crypto()).ok())
        .unwrap_or_default();
    fingerprints
        .first()
        .map(|f| format!("{} {}", f.algorithm, f.value.to_ascii_uppercase()))
        .unwrap_or_default()
}

/// The server's WebRTC identity: the certificate whose fingerprint every
/// SDP answer carries and clients such as Terminal7 pin. Loaded (or made)
/// before the server is built, so that a caller can refuse a bad path and
/// print the fingerprint before anything listens, and the file is read
/// once.
#[derive(Clone)]
pub struct Certificate(RTCCertificate);

impl Certificate {
    /// The certificate kept at `path`, or a new one written there (mode
    /// 600) when the file is missing or its certificate expired: the
    /// identity a server keeps across restarts.
    pub fn keep(path: &Path) -> Result<Certificate, Error> {
        load_or_create_certificate(path).map(Certificate)
    }

    /// Its fingerprint, `sha-256 AA:BB:...`.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.0)
    }
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Certificate")
            .field(&self.fingerprint())
            .finish()
    }
}

/// A fresh self-signed ECDSA P-256 certificate (the reference's identity
/// kind), made by the stack itself.
fn generate_certificate() -> Result<RTCCertificate, Error> {
    let provider = crypto::default_provider().map_err(|e| Error::Rtc(e.to_string()))?;
    let key = provider
        .crypto()
        .generate_signing_key(crypto::SignatureScheme::EcdsaP256Sha256)
        .map_err(|e| Error::Rtc(e.to_string()))?;
    let mut params = rcgen_params()?;
    // A year, renewed at start-up once expired.
    params.not_after = (SystemTime::now() + Duration::from_secs(365 * 24 * 3600)).into();
    RTCCertificate::generate_from_signing_key(params, crypto::SignatureScheme::EcdsaP256Sha256, key)
        .map_err(Error::rtc)
}

fn rcgen_params() -> Result<rcgen::CertificateParams, Error> {
    rcgen::CertificateParams::new(vec!["webexec".to_owned()]).map_err(|e| Error::Rtc(e.to_string()))
}

/// The certificate at `path`, or a new one written there (mode 0600) when
/// the file is missing or its certificate expired: the server's identity,
/// so a client that pinned its fingerprint still trusts it after a restart.
fn load_or_create_certificate(path: &Path) -> Result<RTCCertificate, Error> {
    let io = |e: std::io::Error| Error::File {
        path: path.to_owned(),
        error: e,
    };
    match std::fs::read_to_string(path) {
        Ok(pem) => {
            let provider = crypto::default_provider().map_err(|e| Error::Rtc(e.to_string()))?;
            // `from_pem` indexes the EXPIRES block blindly: check its shape first.
            if !pem.starts_with("-----BEGIN EXPIRES-----") {
                return Err(Error::Config(format!(
                    "{}: not a certificate written by webexec-server",
                    path.display()
                )));
            }
            let cert = RTCCertificate::from_pem(&pem, provider.crypto())
                .map_err(|e| Error::Config(format!("{}: bad certificate: {e}", path.display())))?;
            if cert.expires > SystemTime::now() {
                return Ok(cert);
            }
            tracing::info!(path = %path.display(), "certificate expired; making a new one");
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let cert = generate_certificate()?;
    let pem = cert.serialize_pem().map_err(Error::rtc)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    crate::write_private(path, pem.as_bytes()).map_err(io)?;
    Ok(cert)
}

struct Handler {
    channels: mpsc::UnboundedSender<Accepted<RtcTransport>>,
    gathered: watch::Sender<bool>,
    state: watch::Sender<RTCPeerConnectionState>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.gathered.send_replace(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.state.send_replace(state);
    }

    /// Runs on the connection's driver: hand the channel over, never wait.
    async fn on_data_channel(&self, dc: Arc<dyn DataChannel>) {
        let label = dc.label().await.unwrap_or_default();
        // Already open: `OnOpen` is its first event, skipped by `recv`.
        let _ = self.channels.send(Accepted {
            label,
            channel: RtcTransport::new(
                dc,
                tokio::time::Instant::now() + ACCEPTED_GRACE,
                self.state.subscribe(),
            ),
        });
    }
}

/// One answered peer connection. Dropping it does not close it: call
/// [`Peer::close`].
#[derive(Clone)]
pub(crate) struct Peer {
    pc: Arc<dyn PeerConnection>,
    state: watch::Receiver<RTCPeerConnectionState>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("state", &*self.state.borrow())
            .finish_non_exhaustive()
    }
}

/// A [`Peer`] that does not keep it alive: what signaling remembers for
/// the candidates a client trickles after its offer. A peer connection is
/// owned by its peer's task; when that ends (the client left), the
/// connection, with its buffers and association, goes at once rather than
/// when the signaling entry expires.
#[derive(Clone)]
pub(crate) struct WeakPeer {
    pc: std::sync::Weak<dyn PeerConnection>,
    state: watch::Receiver<RTCPeerConnectionState>,
}

impl WeakPeer {
    /// The peer, while its task still holds it.
    pub(crate) fn upgrade(&self) -> Option<Peer> {
        Some(Peer {
            pc: self.pc.upgrade()?,
            state: self.state.clone(),
        })
    }

    /// True while the peer is alive.
    pub(crate) fn is_alive(&self) -> bool {
        self.pc.strong_count() > 0
    }
}

impl Peer {
    /// This peer, without keeping it alive.
    pub(crate) fn downgrade(&self) -> WeakPeer {
        WeakPeer {
            pc: Arc::downgrade(&self.pc),
            state: self.state.clone(),
        }
    }

    /// Adds a candidate the client trickled.
    pub(crate) async fn add_candidate(
        &self,
        candidate: webexec_proto::Candidate,
    ) -> Result<(), Error> {
        self.pc
            .add_ice_candidate(RTCIceCandidateInit {
                candidate: candidate.candidate,
                sdp_mid: candidate.sdp_mid,
                sdp_mline_index: candidate.sdp_mline_index,
                username_fragment: candidate.username_fragment,
                url: None,
            })
            .await
            .map_err(|e| Error::Candidate(e.to_string()))
    }
}

impl Connection for Peer {
    type Channel = RtcTransport;

    const OUTPUT_PIECE: usize = STREAM_PIECE;

    /// Opens a channel to the client and waits until it is open.
    async fn open_channel(&self, label: &str) -> Result<RtcTransport, Error> {
        let dc = self
            .pc
            .create_data_channel(label, None)
            .await
            .map_err(Error::rtc)?;
        loop {
            match dc.poll().await {
                Some(DataChannelEvent::OnOpen) => break,
                Some(DataChannelEvent::OnClose) | None => return Err(Error::ChannelClosed),
                Some(_) => {}
            }
        }
        Ok(RtcTransport::new(
            dc,
            tokio::time::Instant::now() + OPENED_GRACE,
            self.state.clone(),
        ))
    }

    /// Completes once the connection failed or closed (ICE gave up after
    /// the failed timeout, or the client closed it).
    async fn ended(&self) {
        let mut state = self.state.clone();
        let _ = state
            .wait_for(|s| {
                matches!(
                    s,
                    RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed
                )
            })
            .await;
    }

    /// Closes the connection and every channel on it.
    async fn close(&self) {
        let _ = self.pc.close().await;
    }
}

/// One data channel as a [`Transport`]. Its halves share the channel:
/// [`RtcRx`] is for one task, [`RtcTx`] for another.
pub(crate) struct RtcTransport {
    shared: Arc<Shared>,
}

/// What both halves of an [`RtcTransport`] hold.
struct Shared {
    dc: Arc<dyn DataChannel>,
    /// When a close may go out: see [`OPENED_GRACE`] and [`ACCEPTED_GRACE`].
    close_not_before: tokio::time::Instant,
    /// The connection's state: a closing channel waits longer for a
    /// client that is still connected.
    state: watch::Receiver<RTCPeerConnectionState>,
    /// Cancelled once either half saw the channel close, so that the other
    /// stops reading too (the stack hands each event to one reader only).
    closed: CancellationToken,
}

impl std::fmt::Debug for RtcTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtcTransport")
            .field("id", &self.shared.dc.id())
            .finish_non_exhaustive()
    }
}

impl RtcTransport {
    fn new(
        dc: Arc<dyn DataChannel>,
        close_not_before: tokio::time::Instant,
        state: watch::Receiver<RTCPeerConnectionState>,
    ) -> RtcTransport {
        RtcTransport {
            shared: Arc::new(Shared {
                dc,
                close_not_before,
                state,
                closed: CancellationToken::new(),
            }),
        }
    }
}

impl Shared {
    /// The next message; `None` once the channel closed.
    async fn recv(&self) -> Option<Message> {
        loop {
            let event = tokio::select! {
                biased;
                () = self.closed.cancelled() => return None,
                event = self.dc.poll() => event,
            };
            match event {
                Some(DataChannelEvent::OnMessage(msg)) => {
                    let data = msg.data.freeze();
                    // A string the sender marked as text but that is not
                    // UTF-8 is still the sender's bytes: hand them on as
                    // binary rather than drop them.
                    let text = msg.is_string && std::str::from_utf8(&data).is_ok();
                    return Some(if text {
                        Message::Text(data)
                    } else {
                        Message::Binary(data)
                    });
                }
                Some(DataChannelEvent::OnClose) | None => {
                    self.closed.cancel();
                    return None;
                }
                Some(_) => {}
            }
        }
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("id", &self.dc.id())
            .finish_non_exhaustive()
    }
}

/// Sending half of an [`RtcTransport`].
#[derive(Debug)]
pub(crate) struct RtcTx {
    shared: Arc<Shared>,
    /// `close` was called: sends are refused.
    closing: bool,
}

/// Receiving half of an [`RtcTransport`].
#[derive(Debug)]
pub(crate) struct RtcRx {
    shared: Arc<Shared>,
}

impl Transport for RtcTransport {
    type Tx = RtcTx;
    type Rx = RtcRx;
    fn split(self) -> (RtcTx, RtcRx) {
        (
            RtcTx {
                shared: self.shared.clone(),
                closing: false,
            },
            RtcRx {
                shared: self.shared,
            },
        )
    }
}

#[async_trait]
impl TransportTx for RtcTx {
    /// Sends one message, always as a binary one; waits while the channel
    /// has [`SEND_BUFFER`] bytes unacknowledged. Cancel-safe: dropped while
    /// waiting, nothing was queued.
    ///
    /// Every message the server sends is binary, control JSON and notices
    /// included, as the reference's `Send([]byte)`: Terminal7 decodes `%`
    /// messages with `TextDecoder.decode(event.data)`, which throws on a
    /// string, and pane data with `new Uint8Array(event.data)`, which
    /// makes a string into nothing.
    async fn send(&mut self, msg: Message) -> Result<(), TransportError> {
        if self.closing {
            return Err(TransportError::AlreadyClosed);
        }
        self.shared
            .dc
            .send(BytesMut::from(&msg.payload()[..]))
            .await
            .map_err(|_| TransportError::Closed)
    }

    /// Closes the channel (both directions) once what was sent has been
    /// acknowledged: the stack drops queued messages when a channel closes,
    /// and a pane's last output or a refusal's reason must arrive before
    /// the close that follows it. Waits as long as the client keeps
    /// acknowledging; without progress, gives up after [`LINGER`] once the
    /// connection is no longer connected (a client gone) or after
    /// [`STALLED`] while it is (one that stopped reading), so a slow
    /// client still gets every byte where a fixed deadline would cut its
    /// tail.
    ///
    /// A data channel's close carries no code and no text: `reason` and
    /// `text` are only logged (webexec says why in a message before the
    /// close).
    async fn close(&mut self, reason: CloseReason, text: &str) -> Result<(), TransportError> {
        if std::mem::replace(&mut self.closing, true) {
            return Err(TransportError::AlreadyClosed);
        }
        tracing::debug!(channel = ?self.shared.dc.id(), ?reason, text, "closing a data channel");
        let shared = &self.shared;
        const FIRST_POLL: Duration = Duration::from_millis(2);
        const LAST_POLL: Duration = Duration::from_millis(100);
        let mut poll = FIRST_POLL;
        let mut progress = tokio::time::Instant::now();
        // The stack has no event for "all acknowledged" that does not go
        // through `recv`'s queue: look at the counter.
        let mut outstanding = shared.dc.outstanding_bytes().await.unwrap_or(0);
        while outstanding > 0 {
            let connected = *shared.state.borrow() == RTCPeerConnectionState::Connected;
            let patience = if connected { STALLED } else { LINGER };
            if progress.elapsed() >= patience {
                // What is cut is the end of a pane's output: say so, it
                // is what a user would miss.
                tracing::info!(
                    outstanding,
                    connected,
                    "closing a channel whose client acknowledged nothing for {patience:?}"
                );
                break;
            }
            tokio::time::sleep(poll).await;
            let now = shared.dc.outstanding_bytes().await.unwrap_or(0);
            if now < outstanding {
                progress = tokio::time::Instant::now();
                poll = FIRST_POLL;
            } else {
                // A client that stopped acknowledging is looked at less
                // and less often, not 500 times a second for 30 s.
                poll = (poll * 2).min(LAST_POLL);
            }
            outstanding = now;
        }
        let deadline = tokio::time::Instant::now() + LINGER;
        tokio::time::sleep_until(shared.close_not_before).await;
        let _ = shared.dc.close().await;
        // Read (and drop) whatever the client still sends until its side
        // closes too: SCTP defers the peer's half of the stream reset while
        // received data sits unread, and until that reset completes the
        // stream id stays taken here, so the client's next channel on the
        // same id (ids are reused at once) would never open. If the
        // receiving half is being read meanwhile, it gets some of these
        // messages, and whichever half sees the close ends both.
        let _ = tokio::time::timeout_at(deadline + LINGER, async {
            while shared.recv().await.is_some() {}
        })
        .await;
        Ok(())
    }
}

#[async_trait]
impl TransportRx for RtcRx {
    /// The next message; `Ok(None)` once the channel closed. A data
    /// channel's close says nothing, so there is never a close frame.
    async fn recv(&mut self) -> Result<Option<Message>, TransportError> {
        Ok(self.shared.recv().await)
    }
}

#[cfg(test)]
mod tests {
    use super::IceServer;

    #[test]
    fn credentials_before_the_host_are_taken_out_of_the_url() {
        let server = IceServer::parse("turn:user:pass@turn.example:3478").unwrap();
        assert_eq!(server.url, "turn:turn.example:3478");
        assert_eq!((&*server.username, &*server.credential), ("user", "pass"));
        assert!(IceServer::parse("http://turn.example").is_err());
        assert!(IceServer::parse("turn:").is_err());
    }
}
