//! Log setup: `RUST_LOG` filters (default `info`), lines on stderr, as
//! text or as one JSON object per line for log collectors.

use tracing_subscriber::EnvFilter;

use crate::Error;
use crate::flags::LogFormat;

/// Installs the process's log subscriber. Fails if one is installed.
pub fn init_logging(format: LogFormat) -> Result<(), Error> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    installed.map_err(|e| Error::Logging(e.to_string()))
}
