//! Top-level sections of a policy file (`[[group]]`, `[[policy]]` and everything up to the
//! next one), so that a TOML error in one section does not hide the findings in the others.

use std::ops::Range;

/// One top-level section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Section {
    /// Its bytes in the file: whole lines.
    pub lines: Range<usize>,
    /// Whether it is a `[[group]]`.
    pub is_group: bool,
}

/// The header name of a line like `[[policy]]  # ...`, if it is an array-of-tables header.
fn header(line: &str) -> Option<&str> {
    let rest = line.trim_start().strip_prefix("[[")?;
    let end = rest.find("]]")?;
    Some(rest[..end].trim())
}

/// Splits `text` into the part before the first section and one part per `[[group]]` or
/// `[[policy]]` header.
pub(super) fn split(text: &str) -> Vec<Section> {
    let mut out = vec![Section {
        lines: 0..0,
        is_group: false,
    }];
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        if let Some(name @ ("group" | "policy")) = header(line) {
            out.push(Section {
                lines: at..at,
                is_group: name == "group",
            });
        }
        at += line.len();
        if let Some(last) = out.last_mut() {
            last.lines.end = at;
        }
    }
    out
}

/// `text` with everything outside `keep` blanked (each byte a space, newlines kept), so
/// that byte offsets and line numbers stay those of `text`.
pub(super) fn keep(text: &str, keep: &[Range<usize>]) -> String {
    let bytes: Vec<u8> = text
        .bytes()
        .enumerate()
        .map(|(i, b)| {
            if b == b'\n' || keep.iter().any(|r| r.contains(&i)) {
                b
            } else {
                b' '
            }
        })
        .collect();
    // Kept ranges are whole lines and everything else is ASCII now.
    String::from_utf8(bytes).unwrap_or_default()
}

/// The value of a `name = "..."` line directly in `section` (before any nested table).
pub(super) fn name_of(section: &str) -> Option<String> {
    for line in section.lines().skip(1) {
        if header(line).is_some() {
            return None;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key.trim() == "name" {
            let v = value.trim();
            return Some(v.trim_matches(|c| c == '"' || c == '\'').to_owned());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_top_level_headers_only() {
        let text = "# head\n[[group]]\nname = \"g\"\n[[policy]]\nname = \"p\"\n  [[policy.quota]]\nx = 1\n";
        let s = split(text);
        assert_eq!(s.len(), 3);
        assert_eq!(&text[s[0].lines.clone()], "# head\n");
        assert_eq!(&text[s[1].lines.clone()], "[[group]]\nname = \"g\"\n");
        assert!(s[1].is_group);
        assert_eq!(
            &text[s[2].lines.clone()],
            "[[policy]]\nname = \"p\"\n  [[policy.quota]]\nx = 1\n"
        );
        assert_eq!(name_of(&text[s[1].lines.clone()]).as_deref(), Some("g"));
        let kept = keep(text, &[s[1].lines.clone()]);
        assert_eq!(kept.len(), text.len());
        assert_eq!(kept.lines().count(), text.lines().count());
        assert!(kept.contains("name = \"g\"") && !kept.contains("policy"));
    }
}
