//! The difference between two policy sets, as a unified diff of their exported files: the
//! one rendering `sluice policy diff`, `sluice policy import --dry-run` and the admin
//! service's import preview show.

use similar::TextDiff;
use sluice_engine::model::PolicySetDef;

/// A unified diff from `old` to `new` (both written as [`super::to_toml`] writes them, so
/// comments and layout of a file do not count), with `old_label` and `new_label` as its
/// `---`/`+++` headers. `None` when the sets are equal.
pub fn diff(
    old: &PolicySetDef,
    new: &PolicySetDef,
    old_label: &str,
    new_label: &str,
) -> Option<String> {
    if old == new {
        return None;
    }
    let (old, new) = (super::to_toml(old), super::to_toml(new));
    let diff = TextDiff::from_lines(&old, &new);
    Some(
        diff.unified_diff()
            .context_radius(3)
            .header(old_label, new_label)
            .to_string(),
    )
}
