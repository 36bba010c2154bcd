//! `sluice explain`: what would happen to a request, and why. Asks a running server (live
//! counter levels) and falls back to evaluating from the database with empty counters.

use crate::admin::parse_request;
use crate::cli::ExplainArgs;
use crate::reload::load_set;
use anyhow::Context;
use sluice_engine::{Engine, EngineSettings, MemoryState, MemoryStateSettings, SystemClock};
use sluice_store::Store;
use std::io::Read;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Builds the request text from flags (or stdin) and explains it.
pub async fn run(args: ExplainArgs) -> anyhow::Result<ExitCode> {
    let text = if args.stdin {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s
    } else {
        request_text(&args)
    };
    let req = match parse_request(&text) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sluice explain: {e}");
            return Ok(ExitCode::from(crate::EX_USAGE));
        }
    };
    if !args.offline {
        let server = args.server.clone();
        let body = text.clone();
        let answer = tokio::task::spawn_blocking(move || ask_server(&server, &body)).await?;
        match answer {
            Ok(explanation) => {
                print!("{explanation}");
                return Ok(ExitCode::SUCCESS);
            }
            Err(e) => eprintln!(
                "No running server answered at {} ({e}); evaluating from the database with counters at zero.",
                args.server
            ),
        }
    }
    let url = args.db.url();
    let store = Store::connect(&url)
        .await
        .with_context(|| format!("cannot open {url}"))?;
    let version = store.version().await?;
    let (set, _) = load_set(&store, version).await?;
    store.close().await;
    let state = Arc::new(MemoryState::new(
        Arc::new(SystemClock),
        MemoryStateSettings::default(),
    ));
    let engine = Engine::new(set, state, EngineSettings::default());
    print!("{}", engine.explain(&req).await);
    Ok(ExitCode::SUCCESS)
}

fn request_text(a: &ExplainArgs) -> String {
    let mut s = format!(
        "request=smtpd_access_policy\nprotocol_state={}\n",
        a.protocol_state
    );
    let mut put = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            s.push_str(&format!("{k}={v}\n"));
        }
    };
    put("sender", &a.sender);
    put("recipient", &a.recipient);
    put("client_address", &a.client_address);
    put("client_name", &a.client_name);
    put("reverse_client_name", &a.reverse_client_name);
    put("helo_name", &a.helo);
    put("sasl_username", &a.sasl_username);
    put("instance", &a.instance);
    put("size", &a.size.map(|n| n.to_string()));
    s
}

fn ask_server(server: &str, body: &str) -> Result<String, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(3)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut resp = agent
        .post(&format!("http://{server}/explain"))
        .send(body)
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let text = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(text)
    } else if status == 404 {
        Err("the server does not serve POST /explain (http_explain = true enables it)".into())
    } else {
        Err(format!("server said {status}: {}", text.trim()))
    }
}
