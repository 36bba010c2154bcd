//! `sluice explain`: what would happen to a request, and why. Asks a running server (live
//! counter levels) and falls back to evaluating from the database with empty counters.
//!
//! Exit status (documented in docs/policies.md): [`EXIT_PASSES`] when Postfix would not be
//! refused (DUNNO, OK, and actions that do not refuse: PREPEND, WARN, HOLD, ...),
//! [`EXIT_REFUSED`] for a refusal (REJECT, DEFER, DEFER_IF_PERMIT, DEFER_IF_REJECT, an
//! explicit 4xx/5xx code), [`EXIT_ERROR`] when nothing could be explained (database
//! unreachable, ...), 64 for a request that cannot be evaluated.

use crate::cli::ExplainArgs;
use crate::config::redact;
use crate::metrics_listener::parse_request;
use crate::reload::load_set;
use anyhow::Context;
use sluice_engine::{Engine, EngineSettings, MemoryState, MemoryStateSettings, SystemClock};
use sluice_protocol::Action;
use std::io::Read;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Exit status: Postfix would let the request pass.
pub const EXIT_PASSES: u8 = 0;
/// Exit status: Postfix would be told to refuse (reject or defer).
pub const EXIT_REFUSED: u8 = 1;
/// Exit status: nothing could be explained (an error was printed).
pub const EXIT_ERROR: u8 = 2;

/// Builds the request text from flags (or stdin) and explains it; the exit status says
/// whether the request would pass, be refused, or could not be explained.
pub async fn run(args: ExplainArgs) -> ExitCode {
    match explain(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sluice explain: {}", crate::error_text(&e));
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// The exit status for the action Postfix would get.
pub fn exit_status(action: &Action) -> u8 {
    let refused = match action {
        Action::Reject(_)
        | Action::Defer(_)
        | Action::DeferIfPermit(_)
        | Action::DeferIfReject(_) => true,
        Action::Code { code, .. } => (400..600).contains(code),
        _ => false,
    };
    if refused {
        EXIT_REFUSED
    } else {
        EXIT_PASSES
    }
}

/// The action in an explanation's last `Action: action=...` line.
fn action_of(explanation: &str) -> Option<Action> {
    explanation
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("Action: action="))
        .and_then(|a| a.parse().ok())
}

async fn explain(args: ExplainArgs) -> anyhow::Result<ExitCode> {
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
                let Some(action) = action_of(&explanation) else {
                    anyhow::bail!(
                        "the server at {} answered without an `Action:` line: is it a sluice serve or edge of this version?",
                        args.server
                    );
                };
                return Ok(ExitCode::from(exit_status(&action)));
            }
            Err(e) => eprintln!(
                "No running server answered at {} ({e}); evaluating from the database with counters at zero.",
                args.server
            ),
        }
    }
    let url = args.db.url();
    let store = crate::database::open(&url, crate::database::Schema::MigrateSqlite)
        .await
        .with_context(|| format!("cannot open the policy database {}", redact(&url)))?;
    let version = store.version().await?;
    let (set, _) = load_set(&store, version).await?;
    store.close().await;
    let state = Arc::new(MemoryState::new(
        Arc::new(SystemClock),
        MemoryStateSettings::default(),
    ));
    let engine = Engine::new(set, state, EngineSettings::default());
    // Lookups (DNS) through the system's resolver, as a server without dns_servers would.
    let dns = sluice_dns::Answerer::new(sluice_dns::DnsConfig::default());
    let explanation = crate::metrics_listener::explain_answering(&engine, &dns, &req).await;
    print!("{explanation}");
    let action = explanation.action.unwrap_or(Action::Dunno);
    Ok(ExitCode::from(exit_status(&action)))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_exit_1_and_everything_else_0() {
        for (action, want) in [
            ("DUNNO", EXIT_PASSES),
            ("OK", EXIT_PASSES),
            ("PREPEND X-Seen: yes", EXIT_PASSES),
            ("WARN look", EXIT_PASSES),
            ("REJECT 5.7.1 no", EXIT_REFUSED),
            ("DEFER 4.7.1 later", EXIT_REFUSED),
            ("DEFER_IF_PERMIT 4.3.0 x", EXIT_REFUSED),
            ("DEFER_IF_REJECT x", EXIT_REFUSED),
            ("450 4.7.1 slow down", EXIT_REFUSED),
            ("554 5.7.1 go away", EXIT_REFUSED),
        ] {
            let a: Action = action.parse().unwrap();
            assert_eq!(exit_status(&a), want, "{action}");
        }
        let text =
            "Request: RCPT ...\nAction: action=DEFER 4.7.1 Too many (try again in 7 minutes)\n";
        assert!(matches!(action_of(text), Some(Action::Defer(_))));
        assert_eq!(action_of("no action line\n"), None);
    }
}
