//! The TOML policy file: parsing, friendly units, errors with file/line/field, export.

use sluice_engine::model::{
    AccessControlDef, GroupDef, GroupMemberDef, LimitDef, MemberDef, PolicyDef, PolicySetDef,
    QuotaDef,
};
use sluice_engine::Severity;
use sluice_store::policy_file::{parse, to_toml, FileDiagnostic};

const GOOD: &str = r#"
[[group]]
name = "internal_ips"
members = ["10.0.0.0/8", "192.168.0.0/16"]

[[group]]
name = "internal_domains"
comment = "ours"

[[group.members]]
member = "@example.com"

[[group.members]]
member = "@example.org"
disabled = true
comment = "retired"

[[policy]]
name = "Inbound"
priority = 10
description = "mail from outside"

[[policy.member]]
source = "!%internal_ips"
destination = "%internal_domains"

[[policy.access_control]]
name = "block spammer"
verdict = "REJECT"
data = "550 go away"
disabled = true

[[policy.quota]]
name = "per sender"
track = "Sender:user@domain"
period = "1h"
verdict = "DEFER"
last_quota = true

[[policy.quota.limit]]
type = "RecipientCount"
limit = 500

[[policy.quota.limit]]
type = "MessageCumulativeSize"
limit = "10MB"
comment = "size"

[[policy]]
name = "Monitor only"
priority = 60
monitor = true

[[policy.quota]]
name = "per ip"
track = "SenderIP:/24"
period = 90
verdict = "REJECT"

[[policy.quota.limit]]
type = "MessageCount"
limit = 100
"#;

fn expected_good() -> PolicySetDef {
    PolicySetDef {
        greylisting_whitelist: Vec::new(),
        checkhelo_blacklist: Vec::new(),
        checkhelo_whitelist: Vec::new(),
        groups: vec![
            GroupDef {
                name: "internal_ips".into(),
                members: vec![
                    GroupMemberDef {
                        member: "10.0.0.0/8".into(),
                        ..Default::default()
                    },
                    GroupMemberDef {
                        member: "192.168.0.0/16".into(),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            },
            GroupDef {
                name: "internal_domains".into(),
                comment: Some("ours".into()),
                disabled: false,
                members: vec![
                    GroupMemberDef {
                        member: "@example.com".into(),
                        ..Default::default()
                    },
                    GroupMemberDef {
                        member: "@example.org".into(),
                        disabled: true,
                        comment: Some("retired".into()),
                    },
                ],
            },
        ],
        policies: vec![
            PolicyDef {
                name: "Inbound".into(),
                priority: 10,
                description: Some("mail from outside".into()),
                members: vec![MemberDef {
                    source: Some("!%internal_ips".into()),
                    destination: Some("%internal_domains".into()),
                    ..Default::default()
                }],
                access_control: vec![AccessControlDef {
                    name: "block spammer".into(),
                    verdict: "REJECT".into(),
                    data: Some("550 go away".into()),
                    disabled: true,
                    comment: None,
                }],
                quotas: vec![QuotaDef {
                    name: "per sender".into(),
                    track: "Sender:user@domain".into(),
                    period: 3600,
                    verdict: "DEFER".into(),
                    last_quota: true,
                    limits: vec![
                        LimitDef {
                            kind: "RecipientCount".into(),
                            limit: 500,
                            ..Default::default()
                        },
                        LimitDef {
                            kind: "MessageCumulativeSize".into(),
                            limit: 10_000_000,
                            disabled: false,
                            comment: Some("size".into()),
                        },
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            },
            PolicyDef {
                name: "Monitor only".into(),
                priority: 60,
                monitor: true,
                quotas: vec![QuotaDef {
                    name: "per ip".into(),
                    track: "SenderIP:/24".into(),
                    period: 90,
                    verdict: "REJECT".into(),
                    limits: vec![LimitDef {
                        kind: "MessageCount".into(),
                        limit: 100,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            },
        ],
    }
}

/// 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in text"))
        + 1
}

/// The errors of a refused file (warnings left out).
fn errors_only(
    result: Result<sluice_store::policy_file::ParsedFile, Vec<FileDiagnostic>>,
) -> Vec<FileDiagnostic> {
    let mut all = result.expect_err("the file should be refused");
    all.retain(|e| e.severity == Severity::Error);
    all
}

fn only_error(
    result: Result<sluice_store::policy_file::ParsedFile, Vec<FileDiagnostic>>,
) -> FileDiagnostic {
    let errors = result.expect_err("the file should be refused");
    let first = errors[0].clone();
    assert_eq!(
        first.severity,
        Severity::Error,
        "errors come first: {errors:?}"
    );
    first
}

#[test]
fn parses_friendly_forms_into_the_model() {
    let parsed = parse("policies.toml", GOOD).unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(parsed.def, expected_good());
}

#[test]
fn export_reimports_to_the_same_definition() {
    let def = expected_good();
    let text = to_toml(&def);
    let back = parse("exported.toml", &text).unwrap_or_else(|e| panic!("{e:#?}\n{text}"));
    assert_eq!(back.def, def, "exported text:\n{text}");
    // Units as people write them; members inline where they can be.
    assert!(text.contains("period = \"1h\""), "{text}");
    assert!(text.contains("limit = \"10MB\""), "{text}");
    assert!(
        text.contains(r#"members = ["10.0.0.0/8", "192.168.0.0/16"]"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"members = ["@example.com", { member = "@example.org", disabled = true, comment = "retired" }]"#
        ),
        "{text}"
    );
    // Stable: exporting again gives the same text.
    assert_eq!(to_toml(&back.def), text);
    // The empty set too.
    let empty = parse("e.toml", &to_toml(&PolicySetDef::default())).unwrap();
    assert_eq!(empty.def, PolicySetDef::default());
}

#[test]
fn unknown_field_names_line_and_field() {
    let text = GOOD.replace("last_quota = true", "last_qouta = true");
    let err = only_error(parse("policies.toml", &text));
    assert_eq!(err.line, line_of(&text, "last_qouta"), "{err}");
    assert_eq!(err.file, "policies.toml");
    assert_eq!(
        err.field, r#"policy "Inbound" > quota "per sender" > last_qouta"#,
        "{err}"
    );
    assert!(err.message.contains("unknown field"), "{err}");
    let shown = err.to_string();
    assert!(
        shown.starts_with(&format!(
            "policies.toml:{}: policy \"Inbound\" > quota \"per sender\" > last_qouta: unknown field",
            err.line
        )),
        "{shown}"
    );
}

#[test]
fn bad_period_string_names_line_and_field() {
    let text = GOOD.replace("period = \"1h\"", "period = \"1 hour\"");
    let err = only_error(parse("policies.toml", &text));
    assert_eq!(err.line, line_of(&text, "1 hour"), "{err}");
    assert_eq!(
        err.field,
        r#"policy "Inbound" > quota "per sender" > period"#
    );
    assert!(err.message.contains("invalid period"), "{err}");
}

/// Issue 12: values that overflow (or whose milliseconds overflow) are refused at their
/// line and field, whether the unit parser or the engine's range check finds them.
#[test]
fn periods_and_limits_out_of_range_name_line_and_field() {
    let period = r#"policy "Inbound" > quota "per sender" > period"#;
    for (bad, words) in [
        (
            "\"18446744073709552s\"",
            "longer than the maximum of 366 days",
        ),
        ("9223372036854775807", "longer than the maximum of 366 days"),
        ("\"31622401s\"", "31,622,401 s is longer than the maximum"),
        (
            "\"99999999999999999999h\"",
            "too long: the maximum is 366 days",
        ),
        ("\"30500568904944w\"", "too long"),
    ] {
        let text = GOOD.replace("period = \"1h\"", &format!("period = {bad}"));
        let err = only_error(parse("policies.toml", &text));
        assert_eq!(err.line, line_of(&text, bad), "{err}");
        assert_eq!(err.field, period, "{err}");
        assert!(err.message.contains(words), "{bad}: {err}");
    }
    let text = GOOD.replace("period = \"1h\"", "period = \"366d\"");
    parse("policies.toml", &text).unwrap_or_else(|e| panic!("{e:#?}"));

    let size = r#"policy "Inbound" > quota "per sender" > limit #2 > limit"#;
    for (bad, words) in [
        ("\"1000000T\"", "above the maximum of 100 TB"),
        ("\"100000000TB\"", "too large"),
        ("\"100.000000001TB\"", "above the maximum of 100 TB"),
    ] {
        let text = GOOD.replace("limit = \"10MB\"", &format!("limit = {bad}"));
        let err = only_error(parse("policies.toml", &text));
        assert_eq!(err.line, line_of(&text, bad), "{err}");
        assert_eq!(err.field, size, "{err}");
        assert!(err.message.contains(words), "{bad}: {err}");
    }
    let text = GOOD.replace("limit = \"10MB\"", "limit = \"100TB\"");
    parse("policies.toml", &text).unwrap_or_else(|e| panic!("{e:#?}"));

    let text = GOOD.replace("limit = 500", "limit = 1000000001");
    let err = only_error(parse("policies.toml", &text));
    assert_eq!(err.line, line_of(&text, "1000000001"), "{err}");
    assert_eq!(
        err.field,
        r#"policy "Inbound" > quota "per sender" > limit #1 > limit"#
    );
    assert!(err.message.contains("1,000,000,000"), "{err}");

    let text = GOOD.replace("priority = 10", "priority = 40000");
    let err = only_error(parse("policies.toml", &text));
    assert_eq!(err.line, line_of(&text, "40000"), "{err}");
    assert_eq!(err.field, r#"policy "Inbound" > priority"#);
}

#[test]
fn bad_size_and_count_units_are_refused() {
    let text = GOOD
        .replace("limit = \"10MB\"", "limit = \"10 parsecs\"")
        .replace("limit = 500", "limit = \"500k\"");
    let errors = errors_only(parse("p.toml", &text));
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_eq!(errors[0].line, line_of(&text, "\"500k\""));
    assert_eq!(
        errors[0].field,
        r#"policy "Inbound" > quota "per sender" > limit #1 > limit"#
    );
    assert_eq!(errors[1].line, line_of(&text, "parsecs"));
    assert!(errors[1].message.contains("invalid size"), "{}", errors[1]);
}

#[test]
fn toml_syntax_and_type_errors_carry_a_line() {
    let text = GOOD.replace("priority = 60", "priority = \"sixty\"");
    let err = only_error(parse("p.toml", &text));
    assert_eq!(err.line, line_of(&text, "\"sixty\""), "{err}");
    assert_eq!(err.field, r#"policy "Monitor only" > priority"#, "{err}");

    let text = GOOD.replace("name = \"per ip\"", "name = \"per ip");
    let err = only_error(parse("p.toml", &text));
    assert_eq!(err.line, line_of(&text, "\"per ip"), "{err}");

    let text = GOOD.replace("track = \"SenderIP:/24\"\n", "");
    let err = only_error(parse("p.toml", &text));
    assert!(err.message.contains("missing field `track`"), "{err}");
    assert!(
        err.field
            .starts_with(r#"policy "Monitor only" > quota "per ip""#),
        "{err}"
    );
}

#[test]
fn bad_cidr_is_reported_at_its_line() {
    let text = GOOD.replace("\"192.168.0.0/16\"", "\"192.168.0.0/33\"");
    let err = only_error(parse("policies.toml", &text));
    assert_eq!(err.line, line_of(&text, "192.168.0.0/33"), "{err}");
    assert!(
        err.field.starts_with(r#"group "internal_ips" > member"#),
        "{err}"
    );

    let text = GOOD.replace("source = \"!%internal_ips\"", "source = \"10.1.2.0/40\"");
    let err = only_error(parse("policies.toml", &text));
    assert_eq!(err.line, line_of(&text, "10.1.2.0/40"), "{err}");
    assert_eq!(
        err.field, r#"policy "Inbound" > member #1 > source"#,
        "{err}"
    );
}

#[test]
fn unknown_track_and_duplicate_names_come_from_validation() {
    let text = GOOD.replace("Sender:user@domain", "Sendr:user@domain");
    let err = only_error(parse("policies.toml", &text));
    assert_eq!(err.line, line_of(&text, "Sendr:user@domain"), "{err}");
    assert_eq!(
        err.field,
        r#"policy "Inbound" > quota "per sender" > track"#
    );

    let text = GOOD.replace("name = \"Monitor only\"", "name = \"Inbound\"");
    let dup_line = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains("name = \"Inbound\""))
        .nth(1)
        .expect("two")
        .0
        + 1;
    let errors = parse("policies.toml", &text).expect_err("duplicate policy name");
    assert!(
        errors.iter().any(|e| e.severity == Severity::Error
            && e.line == dup_line
            && e.field.starts_with("policy \"Inbound\"")),
        "{errors:#?}"
    );
}

#[test]
fn warnings_are_surfaced_with_their_line() {
    // A quota without limits loads but does nothing: a warning, not an error.
    let text = format!(
        "{GOOD}\n[[policy.quota]]\nname = \"inert\"\ntrack = \"Policy\"\nperiod = \"1d\"\nverdict = \"REJECT\"\n"
    );
    let parsed = parse("policies.toml", &text).unwrap_or_else(|e| panic!("{e:#?}"));
    let warning = parsed
        .warnings
        .iter()
        .find(|w| w.field.contains("quota \"inert\""))
        .unwrap_or_else(|| panic!("no warning about the inert quota: {:#?}", parsed.warnings));
    assert_eq!(warning.severity, Severity::Warning);
    assert!(
        warning.line
            >= line_of(
                &text,
                "[[policy.quota]]\nname = \"inert\"".lines().next().unwrap()
            )
    );
    assert!(warning.to_string().contains(": warning: "), "{warning}");
}

/// The example file exports as itself, but for its comments (the database has no place for
/// them): everything from the first `[[group]]` on is byte for byte the same.
#[test]
fn the_example_file_exports_as_written_but_for_comments() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/policies.example.toml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let parsed = parse("policies.example.toml", &text).unwrap_or_else(|e| panic!("{e:#?}"));
    let exported = to_toml(&parsed.def);
    let body = &text[text.find("[[group]]").expect("a group")..];
    assert!(
        !body.lines().any(|l| l.trim_start().starts_with('#')),
        "comments after the header would be lost: move them into the header"
    );
    assert_eq!(exported, body);
}

/// `policy check` reports everything at once: value errors, validation errors and TOML
/// errors, each at its line.
#[test]
fn every_finding_is_reported_in_one_run() {
    let text = GOOD
        .replace("period = \"1h\"", "period = \"1 hour\"")
        .replace("\"192.168.0.0/16\"", "\"192.168.0.0/33\"")
        .replace("Sender:user@domain", "Sendr:user@domain")
        .replace("source = \"!%internal_ips\"", "source = \"!%internal_ip\"");
    let errors = errors_only(parse("p.toml", &text));
    let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
    for needle in ["1 hour", "192.168.0.0/33", "Sendr:", "%internal_ip\""] {
        assert!(
            lines.contains(&line_of(&text, needle)),
            "no finding at the line of {needle:?}: {errors:#?}"
        );
    }
    let group = errors
        .iter()
        .find(|e| e.line == line_of(&text, "%internal_ip\""))
        .unwrap();
    assert!(
        group
            .message
            .ends_with("unknown group %internal_ip; did you mean %internal_ips?"),
        "{group}"
    );
}

/// A TOML error stops its own top-level section only: the next section's TOML error and
/// the validation findings of the readable sections are still reported.
#[test]
fn a_toml_error_does_not_hide_the_other_sections() {
    let text = GOOD
        .replace("priority = 10", "prioity = 10")
        .replace("name = \"per ip\"", "name = \"per ip")
        .replace("\"192.168.0.0/16\"", "\"192.168.0.0/33\"");
    let errors = errors_only(parse("p.toml", &text));
    let at = |needle: &str| {
        errors
            .iter()
            .find(|e| e.line == line_of(&text, needle))
            .unwrap_or_else(|| panic!("nothing at {needle:?}: {errors:#?}"))
    };
    assert!(
        at("prioity").message.contains("unknown field `prioity`"),
        "{errors:#?}"
    );
    assert!(
        at("prioity")
            .message
            .ends_with("; did you mean `priority`?"),
        "{errors:#?}"
    );
    assert_eq!(at("\"per ip").severity, Severity::Error);
    assert!(at("192.168.0.0/33")
        .field
        .starts_with("group \"internal_ips\""));
    assert_eq!(errors.len(), 3, "{errors:#?}");

    // A broken group is not also reported as unknown where it is used.
    let text = GOOD.replace("comment = \"ours\"", "comment = ours");
    let errors = errors_only(parse("p.toml", &text));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].line, line_of(&text, "comment = ours"));
}

/// Awkward text (quotes, backslashes, newlines, non-ASCII, a `[[policy]]` look-alike)
/// exports to a file that reads back to the same set and exports to the same text.
#[test]
fn awkward_text_round_trips() {
    let mut def = expected_good();
    def.policies[0].description = Some("it's \"quoted\"\\ and\nmulti-line [[policy]] é".into());
    def.groups[0].comment = Some("'single' and \"double\"".into());
    def.groups[0].members[1].comment = Some("a, b = c".into());
    let text = to_toml(&def);
    let back = parse("awkward.toml", &text).unwrap_or_else(|e| panic!("{e:#?}\n{text}"));
    assert_eq!(back.def, def, "{text}");
    assert_eq!(to_toml(&back.def), text);
}
