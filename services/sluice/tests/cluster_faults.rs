//! Cluster mode under faults, with real processes: a quota service restarted mid-load, a
//! Redis primary killed mid-load. Every request must get an answer within the edge's
//! deadline (plus scheduling slack), limits must hold, and the edges must recover by
//! themselves.

mod cluster_support;

use cluster_support::*;
use sluice_test_support::rcpt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a reply may take beyond the edge's request deadline: scheduling on two busy cores
/// with a dozen debug-build processes.
const SLACK: Duration = Duration::from_millis(1000);

/// Waits (bounded) until `progress` reaches `n`.
fn wait_progress(progress: &AtomicUsize, n: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    while progress.load(Ordering::Relaxed) < n {
        assert!(Instant::now() < deadline, "load stalled before {n} answers");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn restarting_quota_services_mid_load_loses_nothing() {
    let _serial = serial();
    let db = PgDb::create();
    import(&db.url, &sender_policy(1000));
    let spec = Spec {
        request_deadline_ms: 1500,
        quota_deadline_ms: 1000,
        redis_timeout_ms: 500,
        ..Spec::default()
    };
    let deadline = Duration::from_millis(spec.request_deadline_ms);
    let mut cluster = Cluster::start(&db.url, spec);
    const SENT: usize = 1500;
    let requests: Vec<_> = (0..SENT)
        .map(|i| {
            rcpt(
                "restart@example.org",
                "r@example.net",
                "192.0.2.30",
                &format!("q{i}"),
            )
        })
        .collect();
    let progress = Arc::new(AtomicUsize::new(0));
    let answers = std::thread::scope(|s| {
        let ports = cluster.edge_ports.clone();
        let p = progress.clone();
        let driver = s.spawn(move || load(&ports, 32, requests, p, deadline + SLACK));
        // Kill one quota service hard, restart it on the same port; later stop the other
        // gracefully (SIGTERM: it drains what it has) and restart it too.
        wait_progress(&progress, 300, Duration::from_secs(60));
        cluster.quotas[0].kill();
        cluster.quotas[0].restart();
        wait_progress(&progress, 800, Duration::from_secs(60));
        let status = cluster.quotas[1].terminate(Duration::from_secs(10));
        assert!(
            status.success(),
            "quota-2 exits cleanly on SIGTERM: {status}"
        );
        cluster.quotas[1].restart();
        driver.join().expect("load driver")
    });
    assert_eq!(answers.len(), SENT, "every request answered once");
    let t = tally(&answers, "REJECT sender quota exceeded");
    assert!(
        t.other.is_empty() && t.closed == 0,
        "{t:?}\n{}",
        cluster.logs()
    );
    assert_eq!(t.dunno + t.refused + t.fallback, SENT, "{t:?}");
    assert!(t.dunno <= 1000, "limit exceeded: {t:?}");
    let slowest = answers.iter().map(|a| a.latency).max().unwrap();
    assert!(
        slowest <= deadline + SLACK,
        "a reply took {slowest:?}: {t:?}"
    );
    // Counters survived both restarts: the limit is still full, whichever edge is asked
    // (a restarted counter would admit again).
    for &port in &cluster.edge_ports {
        let a = ask(
            port,
            &rcpt(
                "restart@example.org",
                "r@example.net",
                "192.0.2.30",
                "after",
            ),
        );
        assert_eq!(a, "REJECT sender quota exceeded", "{t:?}");
    }
    // And the quota services still count: a fresh sender is admitted.
    assert_eq!(
        ask(
            cluster.edge_ports[0],
            &rcpt("fresh@example.org", "r@example.net", "192.0.2.30", "f1")
        ),
        "DUNNO"
    );
    eprintln!("quota restarts: {t:?}, slowest reply {slowest:?}");
}

/// Liveness across a failover: answers in time, then recovery. (The limit is out of reach
/// on purpose; that no window admits over its limit across a failover is
/// `cluster_failover.rs`'s lagging-replica test, with a limit of 10.)
#[test]
fn killing_a_redis_primary_gives_fallback_in_time_then_recovers() {
    let _serial = serial();
    let db = PgDb::create();
    import(&db.url, &sender_policy(1_000_000));
    let spec = Spec {
        request_deadline_ms: 800,
        quota_deadline_ms: 500,
        redis_timeout_ms: 250,
        ..Spec::default()
    };
    let deadline = Duration::from_millis(spec.request_deadline_ms);
    let mut cluster = Cluster::start(&db.url, spec);
    let sender = "failover@example.org";
    let req = |i: usize| rcpt(sender, "r@example.net", "192.0.2.40", &format!("f{i}"));
    // Warm up, then find the primary holding this sender's counter.
    for i in 0..5 {
        assert_eq!(ask(cluster.edge_ports[i % 3], &req(i)), "DUNNO");
    }
    let primaries = cluster.redis.cluster().primary_urls();
    let victim = primaries
        .iter()
        .map(|u| u.rsplit(':').next().unwrap().parse::<u16>().unwrap())
        .find(|&port| {
            !cluster
                .redis
                .cluster()
                .cli(port, &["keys", "*failover@*"])
                .trim()
                .is_empty()
        })
        .expect("a primary holds the counter");

    // Load over 16 connections until the edges have answered only DUNNO for 3 s after the
    // kill (or 30 s pass).
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicUsize::new(0));
    let killed_at;
    let recovered;
    let answers = {
        let ports = cluster.edge_ports.clone();
        let (stop2, p) = (stop.clone(), progress.clone());
        let driver = std::thread::spawn(move || {
            // Requests are made on demand: a big list, cut short by `stop`.
            let reqs: Vec<_> = (1000..200_000).map(req).collect();
            load_until(&ports, 16, reqs, p, deadline + SLACK, stop2)
        });
        wait_progress(&progress, 200, Duration::from_secs(30));
        killed_at = Instant::now();
        cluster.redis.cluster().stop_node(victim);
        std::thread::sleep(Duration::from_secs(3));
        // Keep going until recovered (checked on the answers afterwards), at most 30 s.
        let limit = killed_at + Duration::from_secs(30);
        recovered = loop {
            if recovered_for(&cluster.edge_ports, sender, Duration::from_secs(3)) {
                break Some(killed_at.elapsed());
            }
            if Instant::now() > limit {
                break None;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        stop.store(true, Ordering::Relaxed);
        driver.join().expect("load driver")
    };
    let t = tally(&answers, "");
    assert!(
        t.other.is_empty() && t.closed == 0,
        "{t:?}\n{}",
        cluster.logs()
    );
    assert!(t.fallback > 0, "the kill was felt: {t:?}");
    let slowest = answers.iter().map(|a| a.latency).max().unwrap();
    assert!(
        slowest <= deadline + SLACK,
        "a reply took {slowest:?}: {t:?}"
    );
    let Some(recovered_in) = recovered else {
        panic!(
            "still failing 30 s after the kill: {t:?}\n{}",
            cluster.logs()
        );
    };
    eprintln!(
        "redis failover: {t:?}, slowest reply {slowest:?}, recovered within {recovered_in:?}"
    );
}

/// Whether every edge answered DUNNO to fresh requests continuously for `window`
/// (probing every 100 ms; false at the first non-DUNNO).
fn recovered_for(ports: &[u16], sender: &str, window: Duration) -> bool {
    let start = Instant::now();
    let mut i = 0;
    while start.elapsed() < window {
        for &p in ports {
            i += 1;
            let a = ask(
                p,
                &rcpt(
                    sender,
                    "r@example.net",
                    "192.0.2.41",
                    &format!("probe{}-{i}", start.elapsed().as_nanos()),
                ),
            );
            if a != "DUNNO" {
                return false;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}
