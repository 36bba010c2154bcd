//! The difference between two policy sets, as a unified diff of their exported files
//! (`sluice policy diff`, `sluice policy import --dry-run`).

/// The diff's one home is the policy-file module of the store (the admin service's import
/// preview shows the same).
pub use sluice_store::policy_file::diff as render;

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_engine::model::{GroupDef, PolicySetDef};

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
