//! `GET /panes`: every pane of the table the daemon's protocols share,
//! with who is attached by protocol.
//!
//! The listing reads the shared [`Session`] itself (each attached client
//! holds a lease labelled with its protocol, [`exec_core::Claim`]): the
//! daemon keeps no table of its own that could disagree with it.

use std::collections::BTreeMap;
use std::time::UNIX_EPOCH;

use axum::Json;
use axum::extract::State;
use exec_core::Session;
use serde::Serialize;

/// One pane as `GET /panes` lists it.
#[derive(Debug, Serialize)]
pub(crate) struct Listed {
    /// The number every protocol attaches it by (webexec's `>ID`,
    /// `reconnect_pane`; wsep's `id: "ID"`).
    id: u64,
    /// wsep's `id` string, for a pane started with one.
    name: Option<String>,
    /// Program and arguments.
    command: Vec<String>,
    /// The terminal's size; `null` for a pane without one.
    size: Option<Size>,
    /// When it started, in seconds since the Unix epoch (UTC).
    started_unix: u64,
    /// Clients attached, by protocol (`{"webexec":1,"wsep":2}`).
    clients: BTreeMap<&'static str, usize>,
}

/// A terminal's size.
#[derive(Debug, Serialize)]
pub(crate) struct Size {
    rows: u16,
    cols: u16,
}

/// The panes of `panes`, in id order.
pub(crate) async fn list(State(panes): State<Session>) -> Json<Vec<Listed>> {
    let listed = panes
        .list()
        .into_iter()
        .map(|entry| Listed {
            id: entry.id.get(),
            name: entry.name,
            command: entry.entry.command().to_vec(),
            size: entry.entry.size().map(|s| Size {
                rows: s.rows,
                cols: s.cols,
            }),
            started_unix: entry
                .started
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default(),
            clients: entry.clients,
        })
        .collect();
    Json(listed)
}
