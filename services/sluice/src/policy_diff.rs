//! The difference between two policy sets, as a unified diff of their exported files
//! (`sluice policy diff`, `sluice policy import --dry-run`).

use similar::TextDiff;
use sluice_engine::model::PolicySetDef;
use sluice_store::policy_file;

/// A unified diff from `old` to `new` (both written as [`policy_file::to_toml`] writes
/// them, so comments and layout of the file do not count), with `old_label` and
/// `new_label` as its `---`/`+++` headers. `None` when the sets are equal.
pub fn render(
    old: &PolicySetDef,
    new: &PolicySetDef,
    old_label: &str,
    new_label: &str,
) -> Option<String> {
    if old == new {
        return None;
    }
    let (old, new) = (policy_file::to_toml(old), policy_file::to_toml(new));
    let diff = TextDiff::from_lines(&old, &new);
    Some(
        diff.unified_diff()
            .context_radius(3)
            .header(old_label, new_label)
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_engine::model::GroupDef;

    #[test]
    fn equal_sets_have_no_diff_and_changes_show_as_lines() {
        let mut a = PolicySetDef::default();
        a.groups.push(GroupDef {
            name: "internal_ips".into(),
            ..GroupDef::default()
        });
        assert_eq!(render(&a, &a.clone(), "db", "file"), None);
        let mut b = a.clone();
        b.groups[0].name = "internal_nets".into();
        let diff = render(&a, &b, "db", "file").expect("a diff");
        assert!(diff.starts_with("--- db\n+++ file\n"), "{diff}");
        assert!(diff.contains("\n-name = \"internal_ips\"\n"), "{diff}");
        assert!(diff.contains("\n+name = \"internal_nets\"\n"), "{diff}");
    }
}
