//! Explain: what would happen to a request, and why — which policies match, what each module
//! decides, the counter levels and the action — charging nothing. With the running engine
//! of `sluice serve` ([`crate::AdminOptions::engine`]) the levels are live; without one, the
//! stored policies are evaluated with counters at zero (as `sluice explain --offline`).
//! Domain admins may not use it: an explanation shows every matching policy, whoever's.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sluice_engine::{
    compile, Engine, EngineSettings, MemoryState, MemoryStateSettings, PolicyRequest, SystemClock,
};
use sluice_store::AdminRole;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::AppState;

/// A request to explain: its attributes, or `text` (protocol text, `name=value` lines).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExplainRequest {
    /// The whole request as protocol text; when given, the other fields are ignored.
    #[serde(default)]
    pub text: Option<String>,
    /// `RCPT` (default), `DATA`, `END-OF-MESSAGE`, ...
    #[serde(default)]
    pub protocol_state: Option<String>,
    /// Envelope sender (empty: the null sender).
    #[serde(default)]
    pub sender: Option<String>,
    /// Recipient.
    #[serde(default)]
    pub recipient: Option<String>,
    /// Client IP address (default 192.0.2.1).
    #[serde(default)]
    pub client_address: Option<String>,
    /// Client hostname.
    #[serde(default)]
    pub client_name: Option<String>,
    /// Reverse DNS name of the client.
    #[serde(default)]
    pub reverse_client_name: Option<String>,
    /// HELO name.
    #[serde(default)]
    pub helo_name: Option<String>,
    /// SASL user name.
    #[serde(default)]
    pub sasl_username: Option<String>,
    /// Message size, bytes (a number, or a string of digits as forms send it).
    #[serde(default, deserialize_with = "number_or_text")]
    #[schema(value_type = Option<u64>)]
    pub size: Option<u64>,
    /// The message the request belongs to.
    #[serde(default)]
    pub instance: Option<String>,
    /// Recipients of the message (sent at DATA and END-OF-MESSAGE).
    #[serde(default, deserialize_with = "number_or_text")]
    #[schema(value_type = Option<u64>)]
    pub recipient_count: Option<u64>,
    /// The port the client connected to (`server_port=` member specs).
    #[serde(default, deserialize_with = "number_or_text")]
    #[schema(value_type = Option<u64>)]
    pub server_port: Option<u64>,
    /// The address the client connected to (`server_address=` member specs).
    #[serde(default)]
    pub server_address: Option<String>,
    /// The listener's `policy_context` (Postfix 3.1+; `policy_context=` member specs).
    #[serde(default)]
    pub policy_context: Option<String>,
}

/// What would happen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Explained {
    /// The action Postfix would get (`DUNNO`, `DEFER 4.7.1 ...`).
    pub action: String,
    /// The explanation, line by line.
    pub lines: Vec<String>,
    /// Whether counter levels are the running server's (else zero).
    pub live_counters: bool,
}

impl ExplainRequest {
    /// Whether any field is given (an empty form shows no explanation).
    pub fn is_empty(&self) -> bool {
        self == &ExplainRequest::default()
            || [
                &self.text,
                &self.sender,
                &self.recipient,
                &self.client_address,
                &self.sasl_username,
            ]
            .iter()
            .all(|f| f.as_deref().is_none_or(|v| v.trim().is_empty()))
    }

    /// The request as protocol text; 422 for a value with a line break (it would add
    /// attributes of its own).
    pub fn to_text(&self) -> Result<String, ApiError> {
        if let Some(text) = self.text.as_deref().filter(|t| !t.trim().is_empty()) {
            return Ok(text.replace("\r\n", "\n"));
        }
        let mut out = String::from("request=smtpd_access_policy\n");
        let state = self
            .protocol_state
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or("RCPT");
        let client = self
            .client_address
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or("192.0.2.1");
        let size = self.size.map(|n| n.to_string());
        let recipient_count = self.recipient_count.map(|n| n.to_string());
        let server_port = self.server_port.map(|n| n.to_string());
        let fields: [(&str, Option<&str>); 14] = [
            ("protocol_state", Some(state)),
            ("sender", self.sender.as_deref()),
            ("recipient", self.recipient.as_deref()),
            ("client_address", Some(client)),
            ("client_name", self.client_name.as_deref()),
            ("reverse_client_name", self.reverse_client_name.as_deref()),
            ("helo_name", self.helo_name.as_deref()),
            ("sasl_username", self.sasl_username.as_deref()),
            ("size", size.as_deref()),
            ("instance", self.instance.as_deref()),
            ("recipient_count", recipient_count.as_deref()),
            ("server_port", server_port.as_deref()),
            ("server_address", self.server_address.as_deref()),
            ("policy_context", self.policy_context.as_deref()),
        ];
        for (name, value) in fields {
            let Some(value) = value.filter(|v| !v.is_empty() || name == "sender") else {
                continue;
            };
            if value.contains(['\n', '\r']) {
                return Err(ApiError::invalid(name, "a line break is not allowed here"));
            }
            out.push_str(&format!("{name}={}\n", value.trim()));
        }
        Ok(out)
    }
}

/// A number given as a JSON number or as text (forms); empty text is none.
fn number_or_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Number(u64),
        Text(String),
    }
    match Option::<Either>::deserialize(d)? {
        None => Ok(None),
        Some(Either::Number(n)) => Ok(Some(n)),
        Some(Either::Text(t)) if t.trim().is_empty() => Ok(None),
        Some(Either::Text(t)) => t
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("{t:?} is not a whole number"))),
    }
}

/// Explains `req` with `engine`, answering its DNS lookups first when the service can (as
/// the policy listeners do).
async fn explain_answering(
    engine: &Engine,
    dns: Option<&sluice_dns::Answerer>,
    req: &PolicyRequest<'_>,
) -> sluice_engine::Explanation {
    match dns {
        Some(dns) => dns.explain(engine, req).await,
        None => engine.explain(req).await,
    }
}

/// Explains `request` for `caller`.
pub async fn explain(
    state: &AppState,
    caller: &Caller,
    request: &ExplainRequest,
) -> Result<Explained, ApiError> {
    if caller.account.role == AdminRole::DomainAdmin {
        return Err(ApiError::forbidden(
            "Explain shows every policy a request matches, whoever's: domain admins may not use it",
        ));
    }
    let text = request.to_text()?;
    let req = PolicyRequest::parse_text(&text).map_err(|e| ApiError::invalid("request", e))?;
    let dns = state.options.dns.as_deref();
    let (explanation, live) = match &state.options.engine {
        Some(engine) => (explain_answering(engine, dns, &req).await, true),
        None => {
            let def = state.store.load().await?;
            let compiled = compile(&def).map_err(|findings| {
                ApiError::conflict(format!(
                    "the stored policies do not compile: {}",
                    findings
                        .first()
                        .map_or_else(String::new, ToString::to_string)
                ))
            })?;
            let counters = Arc::new(MemoryState::new(
                Arc::new(SystemClock),
                MemoryStateSettings::default(),
            ));
            let engine = Engine::new(compiled.set, counters, EngineSettings::default());
            (explain_answering(&engine, dns, &req).await, false)
        }
    };
    let mut explanation = explanation;
    if let (Some(held), false) = (&state.options.held, explanation.delay_queues.is_empty()) {
        if let Ok(messages) = held.list().await {
            let now = u64::try_from(crate::now_ms()).unwrap_or(0);
            for queue in &explanation.delay_queues {
                let at = explanation.lines.len().saturating_sub(1);
                explanation.lines.insert(
                    at,
                    sluice_engine::hold::describe_queue(queue, &messages, now),
                );
            }
        }
    }
    Ok(Explained {
        action: explanation
            .action
            .as_ref()
            .map_or_else(|| "DUNNO".to_owned(), ToString::to_string),
        lines: explanation.lines,
        live_counters: live,
    })
}
