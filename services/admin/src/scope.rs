//! What a domain admin may see and change: the policies of their domains.
//!
//! A policy belongs to a set of domains when it has at least one member and every member is
//! scoped to them: its source or its destination is a list of address items (`@domain`,
//! `user@domain`, `@*.domain`) all at one of the domains or below them. Anything else
//! (`any`, IP networks, SASL users, `%groups`, negations) could match mail of other domains,
//! so such a policy is an admin's. Groups span domains: only admins and viewers see them.

use sluice_engine::model::{MemberDef, PolicyDef};
use sluice_store::{Account, AdminRole};

use crate::error::ApiError;

/// Whether the address item `item` is at one of `domains` or below one.
fn item_in(item: &str, domains: &[String]) -> bool {
    let item = item.trim();
    if item.starts_with('!') {
        return false;
    }
    let Some((_, domain)) = item.split_once('@') else {
        return false;
    };
    let domain = domain.to_ascii_lowercase();
    !domain.is_empty()
        && domains.iter().any(|d| {
            let d = d.to_ascii_lowercase();
            domain == d || domain.ends_with(&format!(".{d}"))
        })
}

/// Whether a member's source or destination list is wholly within `domains`.
pub fn member_in(member: &MemberDef, domains: &[String]) -> bool {
    let side = |list: &Option<String>| {
        list.as_deref().is_some_and(|l| {
            let items: Vec<&str> = l.split(',').filter(|i| !i.trim().is_empty()).collect();
            !items.is_empty() && items.iter().all(|i| item_in(i, domains))
        })
    };
    side(&member.source) || side(&member.destination)
}

/// Whether `account` may see (and, unless a viewer, change) `policy`.
pub fn may_see_policy(account: &Account, policy: &PolicyDef) -> bool {
    match account.role {
        AdminRole::Admin | AdminRole::Viewer => true,
        AdminRole::DomainAdmin => {
            !policy.members.is_empty()
                && policy
                    .members
                    .iter()
                    .all(|m| member_in(m, &account.domains))
        }
    }
}

/// 403 unless `account` may see `policy`.
pub fn check_policy(account: &Account, policy: &PolicyDef) -> Result<(), ApiError> {
    if may_see_policy(account, policy) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "policy {:?} is outside the domains of account {:?} ({}): every member must be an address of those domains",
            policy.name,
            account.name,
            account.domains.join(", ")
        )))
    }
}

/// 403 unless `account` may see groups (domain admins may not).
pub fn check_groups(account: &Account) -> Result<(), ApiError> {
    if account.role == AdminRole::DomainAdmin {
        Err(ApiError::forbidden(
            "groups span domains: only admins (and viewers, to read) see them",
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(source: Option<&str>, destination: Option<&str>) -> MemberDef {
        MemberDef {
            source: source.map(Into::into),
            destination: destination.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn members_are_scoped_by_their_address_items() {
        let d = vec!["example.org".to_owned()];
        assert!(member_in(&member(Some("@example.org"), None), &d));
        assert!(member_in(&member(Some("any"), Some("bob@Example.ORG")), &d));
        assert!(member_in(
            &member(Some("@mail.example.org,a@example.org"), None),
            &d
        ));
        assert!(member_in(&member(Some("@*.example.org"), None), &d));
        assert!(!member_in(&member(Some("@badexample.org"), None), &d));
        assert!(!member_in(
            &member(Some("@example.org,10.0.0.0/8"), None),
            &d
        ));
        assert!(!member_in(&member(Some("!@example.org"), None), &d));
        assert!(!member_in(&member(Some("%ours"), Some("any")), &d));
        assert!(!member_in(&member(None, None), &d));
        assert!(!member_in(&member(Some("user@"), None), &d));
    }
}
