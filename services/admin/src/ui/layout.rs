//! The frame every page shares: head, navigation, the account and a logout button.

use maud::{html, Markup, DOCTYPE};

use crate::auth::Caller;

/// Which navigation entry is current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// The policy list and policy pages.
    Policies,
    /// The audit trail.
    Audit,
    /// Explain.
    Explain,
    /// The policy file (export, import).
    PolicyFile,
    /// The refusal history.
    History,
    /// Top senders.
    TopSenders,
    /// Live counters.
    Counters,
    /// Messages DELAY quotas hold.
    Held,
    /// The static greylisting whitelist.
    GreylistingWhitelist,
    /// Accounting's totals.
    Accounting,
    /// The CheckHelo blacklist and whitelist.
    HeloLists,
    /// No entry (login, errors).
    None,
}

/// A whole page titled `title` around `content`.
pub fn page(title: &str, caller: Option<&Caller>, nav: Nav, content: Markup) -> Markup {
    let link = |href: &str, label: &str, this: Nav| {
        html! { a href=(href) class=[(nav == this).then_some("current")] { (label) } }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Sluice admin" }
                link rel="stylesheet" href="/style.css";
            }
            body {
                header {
                    span.brand { "Sluice admin" }
                    @if let Some(caller) = caller {
                        nav {
                            (link("/policies", "Policies", Nav::Policies))
                            (link("/explain", "Explain", Nav::Explain))
                            @if caller.account.role != sluice_store::AdminRole::DomainAdmin {
                                (link("/policy-file", "Policy file", Nav::PolicyFile))
                            }
                            (link("/history", "History", Nav::History))
                            (link("/top-senders", "Top senders", Nav::TopSenders))
                            (link("/counters", "Counters", Nav::Counters))
                            (link("/held", "Held", Nav::Held))
                            @if caller.account.role != sluice_store::AdminRole::DomainAdmin {
                                (link("/greylisting-whitelist", "Greylisting", Nav::GreylistingWhitelist))
                                (link("/checkhelo-lists", "HELO lists", Nav::HeloLists))
                            }
                            (link("/accounting", "Accounting", Nav::Accounting))
                            (link("/audit", "Audit", Nav::Audit))
                        }
                        span.who {
                            (caller.account.name) " (" (caller.account.role) ")"
                            @if let Some(csrf) = caller.csrf() {
                                form.inline method="post" action="/logout" {
                                    input type="hidden" name="csrf" value=(csrf);
                                    button.secondary.small type="submit" { "Log out" }
                                }
                            }
                        }
                    }
                }
                main { (content) }
            }
        }
    }
}

/// The hidden CSRF field of a form.
pub fn csrf_field(caller: &Caller) -> Markup {
    html! { input type="hidden" name="csrf" value=(caller.csrf().unwrap_or_default()); }
}

/// The "create disabled" box of the add forms: a new object starts disabled when it is
/// ticked, to be prepared now and enabled later with its Enable button. Unticked (the
/// default), the object is enabled at once, as before.
pub fn create_disabled_field() -> Markup {
    html! {
        label.check title="Create it disabled: nothing changes until it is enabled" {
            input type="checkbox" name="disabled" value="true";
            "create disabled"
        }
    }
}

/// Whether an add form asked for its object to start disabled: the box of
/// [`create_disabled_field`] sends `true` when ticked and nothing when not.
pub fn created_disabled(value: Option<&str>) -> Result<bool, crate::error::ApiError> {
    match value.map(str::trim) {
        None | Some("" | "false") => Ok(false),
        Some("true" | "on") => Ok(true),
        Some(_) => Err(crate::error::ApiError::invalid(
            "disabled",
            "tick the box, or leave it empty for an enabled object",
        )),
    }
}

/// An enabled/disabled badge.
pub fn state_badge(disabled: bool) -> Markup {
    html! {
        @if disabled { span.badge.off { "disabled" } } @else { span.badge.on { "enabled" } }
    }
}
