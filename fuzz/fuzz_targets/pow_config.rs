//! pow-server's TOML process configuration (`--config FILE`), through
//! [`pow_server::registry_from_toml`], the function `main` calls.
//!
//! An operator writes this file, so it is trusted; what is fuzzed is that a
//! mistake in it is reported, never a panic or a hang at start-up, and
//! that what loads is what the file says:
//! - the registry has exactly the file's `[process.NAME]` tables;
//! - a configured command refuses a call with the wrong number of
//!   parameters, and takes the right number when it has no patterns.
#![no_main]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use pow_server::{GetError, Handler, Registry, registry_from_toml};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(registry) = registry_from_toml(text) else {
        return;
    };
    let file: toml::Table = toml::from_str(text).expect("a loaded config is TOML");
    let empty = toml::Table::new();
    let processes = match file.get("process") {
        Some(toml::Value::Table(t)) => t,
        None => &empty,
        Some(other) => panic!("`process` loaded from {other}"),
    };
    let mut names: Vec<&str> = registry.names().collect();
    names.sort_unstable();
    let mut expected: Vec<&str> = processes.keys().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(names, expected);

    for (name, def) in processes {
        if def.get("builtin").is_some() {
            continue;
        }
        let params = def
            .get("params")
            .and_then(toml::Value::as_integer)
            .unwrap_or(0);
        let Ok(params) = usize::try_from(params) else {
            panic!("{name}: params = {params} loaded");
        };
        // Keep the calls small: a count of millions is legal but says
        // nothing more.
        if params > 16 {
            continue;
        }
        let wrong = vec!["x".to_owned(); params + 1];
        assert!(matches!(
            call(&registry, name, &wrong),
            Err(GetError::InvalidParams(_))
        ));
        let no_patterns = def
            .get("patterns")
            .and_then(toml::Value::as_array)
            .is_none_or(Vec::is_empty);
        if no_patterns {
            let right = vec!["x".to_owned(); params];
            assert!(call(&registry, name, &right).is_ok(), "{name}");
        }
    }
    let stranger = "\0not configured";
    if !processes.contains_key(stranger) {
        assert!(matches!(
            call(&registry, stranger, &[]),
            Err(GetError::UnknownProcess)
        ));
    }
});

/// [`Handler::get`] of a registry never waits: one poll settles it.
fn call(registry: &Registry, name: &str, params: &[String]) -> Result<(), GetError> {
    let mut future = pin!(registry.get(name, params));
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(result) => result.map(drop),
        Poll::Pending => panic!("Registry::get waited"),
    }
}
