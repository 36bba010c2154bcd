use super::*;
use sluice_engine::window::WindowSpec;

fn op(key: &str, limit: u64, kind: OpKind) -> CounterOp {
    CounterOp {
        key: key.into(),
        limit,
        window: WindowSpec::new(60_000, 60),
        kind,
    }
}

fn refused(wait: u64, used: u64) -> OpResult {
    OpResult {
        outcome: Outcome::Refused {
            retry_after_ms: Some(wait),
        },
        used,
    }
}

fn admitted() -> OpResult {
    OpResult {
        outcome: Outcome::Admitted,
        used: 1,
    }
}

#[test]
fn remembers_a_refusal_until_its_retry_after_and_counts_down() {
    let c = OverLimitCache::new(10);
    let ops = vec![op("k", 5, OpKind::Take { cost: 1 })];
    assert_eq!(c.answer_group(&ops, 1_000), None);
    c.observe(&ops, &[refused(500, 5)], 1_000);
    assert_eq!(c.answer_group(&ops, 1_200), Some(vec![refused(300, 5)]));
    assert_eq!(c.answer_group(&ops, 1_499), Some(vec![refused(1, 5)]));
    assert_eq!(c.answer_group(&ops, 1_500), None, "expired");
    assert!(c.is_empty(), "expired entries are dropped when met");
}

#[test]
fn answers_only_when_the_first_refusable_op_is_a_known_refusal() {
    let c = OverLimitCache::new(10);
    c.observe(
        &[op("over", 5, OpKind::Take { cost: 1 })],
        &[refused(1_000, 5)],
        0,
    );
    let record = OpKind::RecordForEom {
        label: "l".into(),
        group: 0,
    };
    // Records before it are admitted, ops after it are not evaluated.
    let group = vec![
        op("size", 9, record.clone()),
        op("over", 5, OpKind::Take { cost: 1 }),
        op("other", 5, OpKind::Take { cost: 1 }),
    ];
    let answer = c.answer_group(&group, 10).unwrap();
    assert_eq!(answer[0].outcome, Outcome::Admitted);
    assert_eq!(answer[1], refused(990, 5));
    assert_eq!(answer[2].outcome, Outcome::NotEvaluated);
    // Not first: an earlier op could be refused first, or charge.
    let group = vec![
        op("other", 5, OpKind::Take { cost: 1 }),
        op("over", 5, OpKind::Take { cost: 1 }),
    ];
    assert_eq!(c.answer_group(&group, 10), None);
    // Another limit, a zero cost, once-per-message ops: not answered.
    for o in [
        op("over", 6, OpKind::Take { cost: 1 }),
        op("over", 5, OpKind::Take { cost: 0 }),
        op("over", 5, OpKind::TakeOncePerMessage),
    ] {
        assert_eq!(c.answer_group(std::slice::from_ref(&o), 10), None, "{o:?}");
    }
    // A check of at least the refused cost is answered too.
    assert!(c
        .answer_group(&[op("over", 5, OpKind::Check { cost: 3 })], 10)
        .is_some());
}

#[test]
fn smaller_costs_than_the_refused_one_are_not_answered() {
    let c = OverLimitCache::new(10);
    c.observe(
        &[op("size", 100, OpKind::Check { cost: 40 })],
        &[refused(1_000, 70)],
        0,
    );
    assert_eq!(
        c.answer_group(&[op("size", 100, OpKind::Check { cost: 30 })], 1),
        None
    );
    assert!(c
        .answer_group(&[op("size", 100, OpKind::Check { cost: 40 })], 1)
        .is_some());
}

#[test]
fn admissions_forget_and_unknown_or_zero_waits_are_not_remembered() {
    let c = OverLimitCache::new(10);
    let ops = vec![op("k", 5, OpKind::Take { cost: 1 })];
    c.observe(&ops, &[refused(0, 5)], 0);
    let never = OpResult {
        outcome: Outcome::Refused {
            retry_after_ms: None,
        },
        used: 0,
    };
    c.observe(&ops, &[never], 0);
    assert!(c.is_empty());
    c.observe(&ops, &[refused(100, 5)], 0);
    assert_eq!(c.len(), 1);
    c.observe(&ops, &[admitted()], 1);
    assert!(c.is_empty());
}

#[test]
fn is_bounded_and_evicts_the_oldest() {
    let c = OverLimitCache::new(3);
    for i in 0..5u64 {
        let ops = vec![op(&format!("k{i}"), 5, OpKind::Take { cost: 1 })];
        c.observe(&ops, &[refused(1_000, 5)], i);
    }
    assert_eq!(c.len(), 3);
    let known = |i: u64| {
        c.answer_group(&[op(&format!("k{i}"), 5, OpKind::Take { cost: 1 })], 10)
            .is_some()
    };
    assert!(!known(0) && !known(1));
    assert!(known(2) && known(3) && known(4));
    // Re-inserting a key many times keeps the bookkeeping bounded.
    for t in 0..100 {
        c.observe(
            &[op("k4", 5, OpKind::Take { cost: 1 })],
            &[refused(1_000, 5)],
            t,
        );
    }
    assert_eq!(c.len(), 3);
    assert!(c.lock().order.len() <= 6);
}

#[test]
fn a_long_refusal_is_asked_again_after_the_entry_bound() {
    let c = OverLimitCache::new(10);
    let ops = vec![op("k", 5, OpKind::Take { cost: 1 })];
    c.observe(&ops, &[refused(3_600_000, 5)], 0);
    // Answered locally with the real retry-after...
    assert_eq!(
        c.answer_group(&ops, 1_000),
        Some(vec![refused(3_599_000, 5)])
    );
    // ...but only for a few seconds: then the quota service decides again.
    assert_eq!(c.answer_group(&ops, MAX_ENTRY_MS), None);
}

#[test]
fn a_removed_key_is_asked_again() {
    let c = OverLimitCache::new(10);
    let ops = vec![op("k", 5, OpKind::Take { cost: 1 })];
    let other = vec![op("j", 5, OpKind::Take { cost: 1 })];
    c.observe(&ops, &[refused(4_000, 5)], 1_000);
    c.observe(&other, &[refused(4_000, 5)], 1_000);
    assert!(c.answer_group(&ops, 1_100).is_some());
    assert!(c.remove("k"));
    assert!(!c.remove("k"), "removed once");
    assert_eq!(c.answer_group(&ops, 1_100), None, "the service is asked");
    assert!(c.answer_group(&other, 1_100).is_some(), "other keys stay");
}
