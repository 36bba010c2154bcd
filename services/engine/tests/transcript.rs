//! A transcript of decisions and explanations over a policy set that exercises every quota
//! path (monitor groups, LastQuota, once-per-message counts, size checks and END-OF-MESSAGE
//! charges, refusals, near-limit reports), compared with `transcript.txt`, recorded before
//! the engine's hot path was optimised: the optimisations must not change a single line.
//! `SLUICE_BLESS=1` rewrites the file.

use sluice_engine::*;
use std::sync::Arc;

const POLICIES: &str = r#"
[[group]]
name = "vip"
[[group.members]]
member = "@dest3.example"

[[policy]]
name = "acl-monitor"
priority = 5
monitor = true
[[policy.member]]
source = "@domain1.example"
[[policy.access_control]]
name = "would-deny"
verdict = "REJECT"
data = "5.7.1 Trial"
[[policy.quota]]
name = "mon-q"
track = "Sender:@domain"
period = 60
verdict = "DEFER"
[[policy.quota.limit]]
type = "RecipientCount"
limit = 3

[[policy]]
name = "net"
priority = 50
[[policy.member]]
source = "10.0.0.0/8"
[[policy.quota]]
name = "net-q"
track = "SenderIP:/24"
period = 3600
verdict = "DEFER"
[[policy.quota.limit]]
type = "MessageCount"
limit = 9
[[policy.quota.limit]]
type = "RecipientCount"
limit = 20

[[policy]]
name = "sizes"
priority = 60
[[policy.member]]
source = "@*.example"
[[policy.quota]]
name = "bytes"
track = "Sender:user@domain"
period = 600
verdict = "REJECT"
data = "5.7.1 too big"
[[policy.quota.limit]]
type = "MessageCumulativeSize"
limit = 30000
[[policy.quota.limit]]
type = "MessageCount"
limit = 5
[[policy.quota]]
name = "stop"
track = "Recipient:@domain"
period = 600
verdict = "HOLD"
last_quota = true
[[policy.quota.limit]]
type = "RecipientCount"
limit = 7

[[policy]]
name = "after"
priority = 70
[[policy.member]]
destination = "%vip"
[[policy.quota]]
name = "never"
track = "Policy"
period = 60
verdict = "DEFER"
[[policy.quota.limit]]
type = "RecipientCount"
limit = 1

[[policy]]
name = "sasl"
priority = 80
[[policy.member]]
source = "$*"
[[policy.quota]]
name = "sasl-q"
track = "SASLUsername"
period = 60
verdict = "DEFER"
[[policy.quota.limit]]
type = "RecipientCount"
limit = 2
"#;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("pending"),
    }
}

#[test]
fn decisions_and_explanations_match_the_recorded_transcript() {
    let def: PolicySetDef = toml::from_str(POLICIES).unwrap();
    let mut out = String::new();
    for monitor_all in [false, true] {
        let clock = ManualClock::new(1_700_000_000_000);
        let state = Arc::new(MemoryState::new(
            Arc::new(clock.clone()),
            MemoryStateSettings::default(),
        ));
        let set = compile(&def).unwrap_or_else(|e| panic!("{e:?}")).set;
        let e = Engine::new(
            set,
            state,
            EngineSettings {
                monitor_all,
                ..EngineSettings::default()
            },
        );
        let mut scratch = Scratch::default();
        for msg in 0..12u32 {
            let mut reqs = Vec::new();
            for (i, st) in [
                ProtocolState::Rcpt,
                ProtocolState::Rcpt,
                ProtocolState::Rcpt,
                ProtocolState::EndOfMessage,
            ]
            .into_iter()
            .enumerate()
            {
                let ip = format!("10.0.{}.{}", msg % 2, msg);
                let mut r = PolicyRequest::new(st, ip.parse().unwrap());
                r.sender = format!("u{}@domain{}.example", msg % 3, msg % 2).into();
                if msg == 7 {
                    r.sender = "".into();
                }
                r.recipient = format!("r{i}@dest{}.example", (msg + i as u32) % 5).into();
                r.instance = if msg == 5 {
                    "".into()
                } else {
                    format!("inst{msg}").into()
                };
                r.size = if msg % 4 == 0 {
                    0
                } else {
                    4000 + u64::from(msg) * 1000
                };
                if msg % 3 == 0 {
                    r.sasl_username = format!("sasl{}", msg % 2).into();
                }
                reqs.push(r);
            }
            for r in &reqs {
                let x = block_on(e.explain(r));
                out.push_str(&x.to_string());
                let d = block_on(e.decide_reusing(r, &mut scratch));
                out.push_str(&format!("{d:?}\n"));
                clock.advance_ms(7_000);
            }
        }
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/transcript.txt");
    if std::env::var_os("SLUICE_BLESS").is_some() {
        std::fs::write(path, &out).unwrap();
    }
    let want = std::fs::read_to_string(path).unwrap();
    for (i, (got, want)) in out.lines().zip(want.lines()).enumerate() {
        assert_eq!(got, want, "transcript line {}", i + 1);
    }
    assert_eq!(out.lines().count(), want.lines().count());
}
