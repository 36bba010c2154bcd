//! The admin service in real headless Chromium (Debian's `chromium` and `chromium-driver`,
//! driven over WebDriver by fantoccini), against a real `sluice serve`: log in; create a
//! policy with a member, a quota and a limit through the forms; send policy requests over
//! TCP and see the N+1-th deferred; see the sender on the Counters page's "limited now"
//! list, reset it there and see its next request admitted; switch the quota off on its page and see requests pass;
//! switch it on again and use the Explain page (live counter levels: the sender is over its
//! limit). The pages are kept as screenshots in `target/admin-screenshots/`.
//!
//! Without Chromium the test fails saying how to install it (`bash scripts/test.sh` does,
//! through `ensure_chromium` in scripts/services.sh), unless SLUICE_SKIP_BROWSER_TEST=1.

mod admin_support;

use admin_support::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use sluice_test_support::{
    ask_blocking, free_port, output_text, start_front, wait_listening, Process,
};

const LIMIT: usize = 3;

/// `program` on the PATH (or in /usr/bin, where Debian puts both).
fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Where the screenshots go: `target/admin-screenshots/`.
fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("admin-screenshots");
    std::fs::create_dir_all(&dir).expect("create target/admin-screenshots");
    dir
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("a screenshot");
    std::fs::write(screenshot_dir().join(format!("{name}.png")), png).expect("write a screenshot");
}

fn request(sender: &str) -> String {
    format!(
        "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.7\nsender={sender}\nrecipient=rcpt@example.net\ninstance={}",
        free_port()
    )
}

/// Fills the field `selector` (cleared first).
async fn fill(client: &Client, selector: &str, value: &str) {
    let field = client
        .find(Locator::Css(selector))
        .await
        .unwrap_or_else(|e| panic!("no field {selector}: {e}"));
    field.clear().await.unwrap();
    field.send_keys(value).await.unwrap();
}

/// Clicks `selector` and waits for the page `then` shows to have `element`: first for the
/// current document to be replaced (the element may be on it too: a form posted back to
/// the same page), then for the element.
async fn click_then(client: &Client, selector: &str, element: &str) {
    let old = client.find(Locator::Css("html")).await.unwrap();
    client
        .find(Locator::Css(selector))
        .await
        .unwrap_or_else(|e| panic!("no {selector}: {e}"))
        .click()
        .await
        .unwrap();
    let start = std::time::Instant::now();
    while old.tag_name().await.is_ok() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "clicking {selector} loaded no new page"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(element))
        .await
        .unwrap_or_else(|e| panic!("after clicking {selector}: no {element}: {e}"));
}

async fn page_text(client: &Client) -> String {
    client
        .find(Locator::Css("main"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[test]
fn an_operator_limits_a_sender_through_the_pages_of_a_real_browser() {
    if std::env::var_os("SLUICE_SKIP_BROWSER_TEST").is_some() {
        eprintln!("SLUICE_SKIP_BROWSER_TEST is set: the browser test is skipped");
        return;
    }
    let (Some(chromium), Some(driver)) = (which("chromium"), which("chromedriver")) else {
        panic!(
            "headless Chromium is needed for this test: install Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; `bash scripts/test.sh` does it), or set SLUICE_SKIP_BROWSER_TEST=1 to skip it"
        );
    };
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("policies.db").display());
    let out = sluice_with_stdin(
        &[
            "admin",
            "user",
            "add",
            "alice",
            "--role",
            "admin",
            "--database",
            &db,
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(out.status.success(), "{}", output_text(&out));

    let admin_port = free_port();
    let serve = start_front(
        BIN,
        "sluice serve with the admin service",
        "serve",
        &[
            "--database",
            &db,
            "--admin-listen",
            &format!("127.0.0.1:{admin_port}"),
        ],
    );
    wait_listening(admin_port, Duration::from_secs(20), "admin service");
    let driver_port = free_port();
    let _driver = Process::start(
        "chromedriver",
        &driver,
        &[format!("--port={driver_port}")],
        Some(driver_port),
    );
    let profile = tempfile::tempdir().unwrap();
    let base = format!("http://127.0.0.1:{admin_port}");
    let (port, metrics) = (serve.port, serve.metrics);
    let ask = move |sender: &str| ask_blocking(port, &request(sender));

    // Multi-threaded: the blocking waits for the server run in place.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,1000", "--hide-scrollbars",
                         format!("--user-data-dir={}", profile.path().display())],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{driver_port}"))
            .await
            .expect("a WebDriver session with headless Chromium");

        // Log in.
        client.goto(&format!("{base}/policies")).await.unwrap();
        client
            .wait()
            .for_element(Locator::Css("form.login"))
            .await
            .expect("the login page first");
        screenshot(&client, "01-login").await;
        fill(&client, "#name", "alice").await;
        fill(&client, "#password", PASSWORD).await;
        click_then(&client, "form.login button[type=submit]", "form.add[action='/policies']").await;

        // A policy, its member, its quota and its limit, each through its form.
        fill(&client, "form.add[action='/policies'] input[name=name]", "limit-senders").await;
        fill(&client, "form.add[action='/policies'] input[name=priority]", "10").await;
        fill(&client, "form.add[action='/policies'] input[name=description]", "outgoing mail of example.org").await;
        click_then(&client, "form.add[action='/policies'] button", "form.add[action$='/members']").await;
        fill(&client, "form.add[action$='/members'] input[name=source]", "@example.org").await;
        click_then(&client, "form.add[action$='/members'] button", "form.add[action$='/quotas']").await;
        fill(&client, "form.add[action$='/quotas'] input[name=name]", "per-sender").await;
        fill(&client, "form.add[action$='/quotas'] input[name=data]", "4.7.1 Too many messages").await;
        click_then(&client, "form.add[action$='/quotas'] button", "form.add[action$='/limits']").await;
        screenshot(&client, "02-quota-without-limit").await;
        assert!(
            page_text(&client).await.contains("No limits: this quota counts nothing."),
            "the inert quota is pointed out"
        );
        client
            .find(Locator::Css("form.add[action$='/limits'] select[name=type]"))
            .await
            .unwrap()
            .select_by_value("MessageCount")
            .await
            .unwrap();
        fill(&client, "form.add[action$='/limits'] input[name=limit]", &LIMIT.to_string()).await;
        click_then(&client, "form.add[action$='/limits'] button", "form.add[action$='/limits']").await;
        screenshot(&client, "03-policy-chain").await;
        let text = page_text(&client).await;
        assert!(text.contains("MessageCount"), "{text}");
        assert!(text.contains("@example.org"), "{text}");

        // Policy requests over TCP: N admitted, the N+1-th deferred.
        tokio::task::block_in_place(|| wait_until_served(metrics, &db));
        for i in 0..LIMIT {
            assert_eq!(ask("busy@example.org"), "DUNNO", "request {}", i + 1);
        }
        let answer = ask("busy@example.org");
        assert!(answer.starts_with("DEFER 4.7.1 Too many messages; try again in "), "{answer}");

        // The sender shows on "limited now"; reset there (audited), its next request is
        // admitted.
        let policy_page = client.current_url().await.unwrap();
        client.goto(&format!("{base}/counters")).await.unwrap();
        client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css("table.limited"))
            .await
            .expect("the sender on the limited-now list");
        screenshot(&client, "03b-counters-limited-now").await;
        let limited = client
            .find(Locator::Css("table.limited tbody"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(limited.contains("Sender:busy@example.org"), "{limited}");
        assert!(limited.contains("per-sender"), "{limited}");
        assert!(limited.contains(&format!("{LIMIT} / {LIMIT}")), "{limited}");
        let busy_row = "table.limited tr[data-key$='/per-sender/MessageCount/Sender:busy@example.org']";
        click_then(&client, &format!("{busy_row} form.reset button"), "div.notice").await;
        screenshot(&client, "03c-counters-reset").await;
        let text = page_text(&client).await;
        assert!(text.contains("Nobody was refused by a quota"), "{text}");
        assert_eq!(ask("busy@example.org"), "DUNNO", "the next request after the reset");
        // Looked up: one counted since the reset.
        fill(&client, "form.lookup input[name=sender]", "busy@example.org").await;
        click_then(&client, "form.lookup button", "table.lookup").await;
        screenshot(&client, "03d-counters-lookup").await;
        let text = page_text(&client).await;
        assert!(text.contains(&format!("1 / {LIMIT}")), "{text}");
        // Full again: the others fit, the next is refused.
        for i in 1..LIMIT {
            assert_eq!(ask("busy@example.org"), "DUNNO", "request {} after the reset", i + 1);
        }
        let answer = ask("busy@example.org");
        assert!(answer.starts_with("DEFER 4.7.1 Too many messages; try again in "), "{answer}");
        client.goto(policy_page.as_str()).await.unwrap();
        client
            .wait()
            .for_element(Locator::Css("form.add[action$='/limits']"))
            .await
            .unwrap();

        // The quota switched off on its page: requests pass.
        let quota_toggle = "form:has(input[name=object][value='quota/per-sender']) button";
        click_then(&client, quota_toggle, "form.add[action$='/limits']").await;
        screenshot(&client, "04-quota-disabled").await;
        tokio::task::block_in_place(|| wait_until_served(metrics, &db));
        assert_eq!(ask("busy@example.org"), "DUNNO");
        assert_eq!(ask("busy@example.org"), "DUNNO");

        // On again; Explain shows the sender over its limit (live levels, nothing counted).
        click_then(&client, quota_toggle, "form.add[action$='/limits']").await;
        tokio::task::block_in_place(|| wait_until_served(metrics, &db));
        client.goto(&format!("{base}/explain")).await.unwrap();
        fill(&client, "form.add[action='/explain'] input[name=sender]", "busy@example.org").await;
        fill(&client, "form.add[action='/explain'] input[name=recipient]", "rcpt@example.net").await;
        fill(&client, "form.add[action='/explain'] input[name=client_address]", "192.0.2.7").await;
        click_then(&client, "form.add[action='/explain'] button", "pre.card").await;
        screenshot(&client, "05-explain").await;
        let text = page_text(&client).await;
        assert!(text.contains("Action: DEFER 4.7.1 Too many messages"), "{text}");
        assert!(text.contains("limit-senders"), "{text}");
        let answer = ask("busy@example.org");
        assert!(answer.starts_with("DEFER 4.7.1 Too many messages; try again in "), "{answer}");

        // The other pages, for the record.
        client.goto(&format!("{base}/policies")).await.unwrap();
        screenshot(&client, "06-policies").await;
        client.goto(&format!("{base}/audit")).await.unwrap();
        screenshot(&client, "07-audit").await;
        let text = page_text(&client).await;
        assert!(text.contains("policies/limit-senders/quotas/per-sender"), "{text}");
        assert!(
            text.contains("counters/limit-senders/per-sender/MessageCount/Sender:busy@example.org"),
            "the reset is audited: {text}"
        );
        client.goto(&format!("{base}/policy-file")).await.unwrap();
        screenshot(&client, "08-policy-file").await;
        client.close().await.unwrap();
    });
}
