//! The origin rule in a real headless Chromium (`tests/browser/origins.mjs`):
//! a page of another site tries every server's command path; without auth
//! nothing runs, with the token everything does; the servers' own pages
//! work without auth; their pages under a rebound DNS name get 403. Marker
//! files tell what ran. Skips like the other browser test without
//! chromium, except under CI.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use execwire_tests::{Kind, TestServer};
use serde_json::{Value, json};

const KINDS: [(Kind, &str); 4] = [
    (Kind::Wsep, "wsep"),
    (Kind::Webterm, "webterm"),
    (Kind::Pow, "pow"),
    (Kind::Webexec, "webexec"),
];

/// The command paths the page tries, as `origins.mjs` names them.
const ROUTES: [&str; 6] = [
    "wsep",
    "webterm",
    "powWebSocket",
    "powRest",
    "webexecOffer",
    "webexecConnect",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_another_site_runs_nothing_without_the_token() {
    let Some((chromium, dir)) = execwire_tests::browser() else {
        return;
    };
    let markers =
        std::env::temp_dir().join(format!("execwire-origins-browser-{}", std::process::id()));
    std::fs::create_dir_all(&markers).unwrap();
    let mut servers = Vec::new();
    let (mut open, mut auth, mut tokens) = (json!({}), json!({}), json!({}));
    for (kind, name) in KINDS {
        let without = TestServer::of_kind(kind, false, &[]).await;
        let with = TestServer::of_kind(kind, true, &[]).await;
        open[name] = json!(without.addr.to_string());
        auth[name] = json!(with.addr.to_string());
        tokens[name] = json!(with.token);
        servers.extend([without, with]);
    }
    let config = json!({
        "markers": markers,
        "open": open,
        "auth": auth,
        "tokens": tokens,
    });
    let config = config.to_string();
    let stdout =
        execwire_tests::run_browser_script(&chromium, &dir.join("origins.mjs"), &[config.as_ref()])
            .await;
    let seen: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("not JSON ({e}):\n{stdout}");
    });
    let ran = |marker: &str| markers.join(marker).exists();
    for route in ROUTES {
        let foreign = seen["foreign"][route].as_str().unwrap();
        let expected = if route == "powRest" {
            "sent"
        } else {
            "refused"
        };
        assert_eq!(foreign, expected, "{route} from another site: {seen}");
        assert_eq!(
            seen["token"][route], "ran",
            "{route} with the token: {seen}"
        );
        assert!(
            ran(&format!("token-{route}")),
            "{route}: no marker with the token"
        );
    }
    // pow's simple REST request reached its server, which answered 403
    // (the browser hides the status of a refused CORS request, such as
    // webexec's /connect, from the page and from Playwright alike).
    let statuses = seen["foreignStatuses"].as_array().unwrap();
    let refused_new = format!("{}/new", open["pow"].as_str().unwrap());
    assert!(
        statuses
            .iter()
            .any(|s| s["url"].as_str().unwrap().ends_with(&refused_new) && s["status"] == 403),
        "{statuses:?}"
    );
    for page in ["webexecPage", "powDocs"] {
        assert_eq!(seen["own"][page], "ran", "{page}: {seen}");
        assert_eq!(seen["rebound"][page], 403, "{page}: {seen}");
    }
    assert!(ran("own-webexec") && ran("own-pow"), "own pages: {seen}");
    // Checked last, after everything else ran to its end: what was
    // refused was refused before anything started.
    for route in ROUTES {
        assert!(
            !ran(&format!("foreign-{route}")),
            "{route} ran for another site"
        );
    }
    drop(servers);
    let _ = std::fs::remove_dir_all(&markers);
}
