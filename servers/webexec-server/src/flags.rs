//! The WebRTC settings on the command line: the same flags for
//! `webexec-server` and for the `execwire` daemon, which flatten
//! [`RtcFlags`] into their own and turn it into an [`RtcConfig`].

use std::net::IpAddr;
use std::time::Duration;

use crate::{Error, IceServer, PortRange, RtcConfig, TurnSecret};

/// Where the TURN secret may come from instead of the command line.
const TURN_SECRET_ENV: &str = "WEBEXEC_TURN_SECRET";

/// UDP ports, STUN/TURN servers and the TURN secret.
#[derive(Debug, Clone, clap::Args)]
pub struct RtcFlags {
    /// UDP ports for WebRTC, MIN-MAX (0-0: any free port).
    #[arg(
        long,
        global = true,
        default_value = "60000-61000",
        value_name = "MIN-MAX"
    )]
    pub udp_ports: String,
    /// STUN or TURN server (`stun:host:port`, `turn:user:pass@host:port`); repeatable.
    #[arg(long = "ice-server", global = true, value_name = "URL")]
    pub ice_servers: Vec<String>,
    /// Secret shared with TURN relays (coturn's static-auth-secret): every
    /// connection, the page's and the server's own, gets credentials
    /// minted from it for each --turn-url.
    #[arg(
        long,
        global = true,
        env = TURN_SECRET_ENV,
        hide_env_values = true,
        value_name = "SECRET",
        requires = "turn_urls"
    )]
    pub turn_secret: Option<String>,
    /// TURN relay that knows --turn-secret (`turn:host:3478`,
    /// `turns:host:5349`); repeatable.
    #[arg(
        long = "turn-url",
        global = true,
        value_name = "URL",
        requires = "turn_secret"
    )]
    pub turn_urls: Vec<String>,
    /// Seconds minted TURN credentials stay valid.
    #[arg(long, global = true, default_value_t = 12 * 3600, value_name = "SECS")]
    pub turn_ttl: u64,
}

impl RtcFlags {
    /// The WebRTC settings, with UDP bound on `udp_ip` (the address HTTP
    /// listens on: a wildcard binds every interface). Fails on a URL or a
    /// port range that cannot work, and on a TURN secret without relays.
    pub fn config(&self, udp_ip: IpAddr) -> Result<RtcConfig, Error> {
        let ice_servers = self
            .ice_servers
            .iter()
            .map(|s| IceServer::parse(s))
            .collect::<Result<Vec<_>, _>>()?;
        let udp_ports = PortRange::parse(&self.udp_ports)?;
        let turn = match self.turn_secret.clone().filter(|s| !s.is_empty()) {
            Some(secret) => {
                if self.turn_urls.is_empty() {
                    return Err(Error::Config(
                        "a TURN secret needs at least one TURN URL (--turn-url)".into(),
                    ));
                }
                for url in &self.turn_urls {
                    // The same check as --ice-server's: a scheme and a host.
                    IceServer::parse(url)?;
                }
                Some(TurnSecret {
                    urls: self.turn_urls.clone(),
                    secret,
                    ttl: Duration::from_secs(self.turn_ttl),
                    user: "webexec".into(),
                })
            }
            None if !self.turn_urls.is_empty() => {
                return Err(Error::Config(
                    "TURN URLs need the secret to mint their credentials (--turn-secret)".into(),
                ));
            }
            None => None,
        };
        Ok(RtcConfig {
            ice_servers,
            udp_ip,
            udp_ports,
            turn,
        })
    }

    /// Passes these settings on to `cmd`, a server of ours started in the
    /// background: the secret by environment, where `ps` does not show it.
    pub fn pass_to(&self, cmd: &mut std::process::Command) {
        cmd.arg("--udp-ports").arg(&self.udp_ports);
        for server in &self.ice_servers {
            cmd.arg("--ice-server").arg(server);
        }
        for url in &self.turn_urls {
            cmd.arg("--turn-url").arg(url);
        }
        cmd.arg("--turn-ttl").arg(self.turn_ttl.to_string());
        match &self.turn_secret {
            Some(secret) => cmd.env(TURN_SECRET_ENV, secret),
            None => cmd.env_remove(TURN_SECRET_ENV),
        };
    }
}
