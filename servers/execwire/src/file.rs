//! The daemon's configuration file (`--config FILE`): one TOML table with
//! a key per command-line flag, spelled as the flag (`no-auth`,
//! `allow-origin`), and pow's process definitions as `[process.NAME]`
//! tables, read by pow-server's own rules ([`pow_server::Processes`]).
//! A key the daemon does not know is an error that names it, so that a
//! typo is not silently a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Errors in the configuration file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// The file could not be read.
    #[error("{}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said: part of the message, so not also its
        /// `source` (printed with its causes, `{:#}`, it would come twice).
        error: std::io::Error,
    },
    /// Not TOML, or a key or value the daemon does not take; the message
    /// names the key and where it is.
    #[error("{}: {error}", path.display())]
    Toml {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        error: toml::de::Error,
    },
    /// A value of the right type that is still wrong (an origin that is
    /// not one, two settings that exclude each other).
    #[error("{key}: {why}")]
    Value {
        /// The key (or keys).
        key: &'static str,
        /// What is wrong.
        why: String,
    },
    /// A pow process definition that cannot work.
    #[error(transparent)]
    Processes(#[from] pow_server::ConfigError),
}

/// What a configuration file sets: every field is optional, and a flag
/// given on the command line wins over it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    /// `--listen`, every address.
    pub listen: Option<Vec<SocketAddr>>,
    /// `--token`.
    pub token: Option<String>,
    /// `--view-token` (also spelled `view_token`).
    #[serde(alias = "view_token")]
    pub view_token: Option<String>,
    /// `--no-auth`.
    pub no_auth: Option<bool>,
    /// `--insecure`.
    pub insecure: Option<bool>,
    /// `--allow-origin`, every origin.
    pub allow_origin: Option<Vec<String>>,
    /// `--tls-cert`.
    pub tls_cert: Option<PathBuf>,
    /// `--tls-key`.
    pub tls_key: Option<PathBuf>,
    /// `--tls-self-signed`.
    pub tls_self_signed: Option<bool>,
    /// `--log-format`: `text` or `json`.
    pub log_format: Option<String>,
    /// `--ws-ping`, seconds.
    pub ws_ping: Option<u64>,
    /// `--base-path`.
    pub base_path: Option<String>,
    /// `--no-webexec`.
    pub no_webexec: Option<bool>,
    /// `--no-wsep`.
    pub no_wsep: Option<bool>,
    /// `--no-pow`.
    pub no_pow: Option<bool>,
    /// `--no-webterm`.
    pub no_webterm: Option<bool>,
    /// `--shell`.
    pub shell: Option<String>,
    /// `--wsep-session-timeout`, seconds.
    pub wsep_session_timeout: Option<u64>,
    /// `--webterm-html-output`.
    pub webterm_html_output: Option<bool>,
    /// `--udp-ports`, `MIN-MAX`.
    pub udp_ports: Option<String>,
    /// `--ice-server`, every server.
    pub ice_server: Option<Vec<String>>,
    /// `--turn-secret`.
    pub turn_secret: Option<String>,
    /// `--turn-url`, every relay.
    pub turn_url: Option<Vec<String>>,
    /// `--turn-ttl`, seconds.
    pub turn_ttl: Option<u64>,
    /// `--webrtc-certificate`, a file.
    pub webrtc_certificate: Option<PathBuf>,
    /// `--record`, a directory.
    pub record: Option<PathBuf>,
    /// `--record-max-bytes`.
    pub record_max_bytes: Option<u64>,
    /// pow's processes, `[process.NAME]` as in pow-server's file.
    pub process: Option<pow_server::Processes>,
}

impl FileConfig {
    /// Reads and parses `path`.
    pub fn read(path: &Path) -> Result<FileConfig, FileError> {
        let text = std::fs::read_to_string(path).map_err(|error| FileError::Read {
            path: path.to_owned(),
            error,
        })?;
        FileConfig::parse(&text).map_err(|error| FileError::Toml {
            path: path.to_owned(),
            error,
        })
    }

    /// Parses configuration text.
    pub fn parse(text: &str) -> Result<FileConfig, toml::de::Error> {
        toml::from_str(text)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_key_and_processes() {
        let file = FileConfig::parse(
            r#"
listen = ["127.0.0.1:1", "[::1]:2"]
no-auth = true
allow-origin = ["https://a.example"]
ws-ping = 0
no-pow = false
record = "/var/lib/execwire/casts"
record-max-bytes = 1000
[process.hi]
argv = ["echo", "hi"]
"#,
        )
        .unwrap();
        assert_eq!(file.listen.unwrap().len(), 2);
        assert_eq!(file.no_auth, Some(true));
        assert_eq!(file.ws_ping, Some(0));
        assert_eq!(file.record, Some(PathBuf::from("/var/lib/execwire/casts")));
        assert_eq!(file.record_max_bytes, Some(1000));
        let processes = file.process.unwrap();
        assert_eq!(processes.names().collect::<Vec<_>>(), ["hi"]);
        assert!(processes.registry().is_ok());
    }

    #[test]
    fn the_example_in_deploy_reads() {
        let text = include_str!("../../../deploy/execwire.toml");
        let file = FileConfig::parse(text).unwrap();
        assert_eq!(file.listen.unwrap().len(), 1);
        let names: Vec<String> = file
            .process
            .as_ref()
            .unwrap()
            .names()
            .map(String::from)
            .collect();
        assert_eq!(names, ["date", "echo", "ls"]);
        assert!(file.process.unwrap().registry().is_ok());
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = FileConfig::parse("lisen = []\n").unwrap_err().to_string();
        assert!(e.contains("unknown field `lisen`"), "{e}");
        let e = FileConfig::parse("[process.x]\nargv = [\"a\"]\nparms = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `parms`"), "{e}");
    }
}
