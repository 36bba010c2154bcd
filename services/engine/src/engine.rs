//! The module chain over one request. (Stub; being written.)

use crate::compile::PolicySet;
use crate::state::{State, StateError};
use arc_swap::ArcSwap;
use sluice_protocol::{Action, PolicyRequest};
use std::fmt;
use std::sync::Arc;

/// Engine-wide settings.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Run every policy in monitor mode: evaluate and count, log the verdict, answer DUNNO.
    pub monitor_all: bool,
    /// Sub-buckets per quota period (default 60): the window's granularity.
    pub buckets_per_period: u32,
    /// The answer when the counter backend fails or times out.
    pub state_failure_action: Action,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            monitor_all: false,
            buckets_per_period: 60,
            state_failure_action: Action::DeferIfPermit(Some(
                "4.3.0 Policy service temporarily unavailable, try again later".into(),
            )),
        }
    }
}

/// The engine: a swappable compiled policy set, a counter backend, settings.
pub struct Engine {
    set: ArcSwap<PolicySet>,
    state: Arc<dyn State>,
    settings: EngineSettings,
}

/// The outcome of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// What Postfix gets.
    pub action: Action,
    /// Every verdict a module gave (including monitor-mode ones not enforced), for logs.
    pub verdicts: Vec<ModuleVerdict>,
    /// Set when the counter backend failed and the fallback action was used.
    pub state_error: Option<StateError>,
}

/// A module's verdict on a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleVerdict {
    /// `AccessControl` or `Quotas`.
    pub module: &'static str,
    /// The policy it came from.
    pub policy: Arc<str>,
    /// The access control rule or quota name.
    pub name: Arc<str>,
    /// The action it gave.
    pub action: Action,
    /// True when the policy (or the service) runs in monitor mode: logged, not enforced.
    pub monitor: bool,
    /// For quotas: the counter, its level and its limit.
    pub counter: Option<CounterLevel>,
}

/// A counter's level, for logs and explanations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterLevel {
    /// The counter's identity.
    pub key: String,
    /// The level in the window.
    pub used: u64,
    /// The limit.
    pub limit: u64,
}

/// What `sluice explain` prints: which policies matched and why, what each module decided,
/// counter levels, and the action Postfix would get. Nothing is charged.
#[derive(Debug, Clone, Default)]
pub struct Explanation {
    /// Human-readable lines.
    pub lines: Vec<String>,
    /// The action Postfix would get.
    pub action: Option<Action>,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for l in &self.lines {
            writeln!(f, "{l}")?;
        }
        Ok(())
    }
}

impl Engine {
    /// An engine over `set`, counting in `state`.
    pub fn new(set: PolicySet, state: Arc<dyn State>, settings: EngineSettings) -> Self {
        Engine {
            set: ArcSwap::from_pointee(set),
            state,
            settings,
        }
    }

    /// Swaps in a new policy set; requests in flight finish on the old one.
    pub fn replace_policies(&self, set: PolicySet) {
        self.set.store(Arc::new(set));
    }

    /// The current policy set.
    pub fn policies(&self) -> Arc<PolicySet> {
        self.set.load_full()
    }

    /// The settings.
    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// Decides one request.
    pub async fn decide(&self, _req: &PolicyRequest) -> Decision {
        let _ = &self.state;
        Decision {
            action: Action::Dunno,
            verdicts: Vec::new(),
            state_error: None,
        }
    }

    /// Explains one request without charging anything.
    pub async fn explain(&self, _req: &PolicyRequest) -> Explanation {
        Explanation::default()
    }
}
