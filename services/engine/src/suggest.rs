//! "Did you mean ...?" for mistyped names (groups referenced as `%name`).

/// The candidate closest to `name`, if one is close enough to be a likely typo: equal but
/// for case, or within one edit per three characters (at least one) — transpositions count
/// as one edit. Ties go to the alphabetically first.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let wanted = name.to_lowercase();
    let budget = (wanted.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(&wanted, &c.to_lowercase()), c))
        .filter(|&(d, _)| d <= budget)
        .min()
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::closest;

    #[test]
    fn finds_typos_and_nothing_far() {
        let groups = ["internal_ips", "internal_domains", "partners"];
        assert_eq!(closest("internal_ip", groups), Some("internal_ips"));
        assert_eq!(closest("Internal_IPS", groups), Some("internal_ips"));
        assert_eq!(
            closest("internal_domians", groups),
            Some("internal_domains")
        );
        assert_eq!(closest("parnters", groups), Some("partners"));
        assert_eq!(closest("customers", groups), None);
        assert_eq!(closest("x", groups), None);
    }
}
