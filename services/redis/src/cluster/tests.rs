//! The client against a real 3-primary Redis Cluster: routing by slot, `MOVED` and `ASK`
//! followed with the command run exactly once, and nothing resent after a connection cut
//! or a timeout even though Redis ran the command.

use super::request::Request;
use super::slots::key_slot;
use super::CallError;
use crate::conn::{parse, Conn};
use crate::scripts::{CounterCall, Mode, Scripts};
use sluice_engine::window::WindowSpec;
use sluice_engine::StateError;
use sluice_test_support::{CuttingProxy, RedisCluster};
use std::time::Duration;

/// A counter-script call on `key` at a fixed time: limit 10 per minute.
fn counter_call(key: &str, mode: Mode, cost: u64) -> CounterCall<'_> {
    CounterCall {
        key: key.into(),
        mode,
        cost,
        limit: 10,
        window: WindowSpec::new(60_000, 60),
        now_ms: Some(1_700_000_000_000),
        want: 0,
    }
}

const TIMEOUT: Duration = Duration::from_millis(1000);

async fn connect(cluster: &RedisCluster) -> Conn {
    Conn::connect(&cluster.urls(), &Default::default(), TIMEOUT)
        .await
        .unwrap()
        .0
}

fn hincrby(key: &str, by: i64) -> Request {
    let mut cmd = redis::cmd("HINCRBY");
    cmd.arg(key).arg("f").arg(by);
    Request::single(key, cmd)
}

async fn incr(conn: &Conn, key: &str, by: i64) -> Result<i64, StateError> {
    let reply = conn.call(&hincrby(key, by), TIMEOUT).await?;
    parse(reply.into_iter().next().unwrap())
}

/// The field `f` of `key` as stored on the node at `port` ("" if absent).
fn stored(cluster: &RedisCluster, port: u16, key: &str) -> String {
    cluster.cli(port, &["hget", key, "f"]).trim().to_string()
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit_once(':').unwrap().1.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_key_goes_to_the_primary_of_its_slot() {
    let cluster = RedisCluster::start(3, 0);
    let conn = connect(&cluster).await;
    let mut ports = std::collections::HashSet::new();
    for i in 0..30 {
        let key = format!("route:{{k{i}}}:w");
        assert_eq!(key_slot(key.as_bytes()), cluster.key_slot(&key), "{key}");
        assert_eq!(incr(&conn, &key, 1).await.unwrap(), 1);
        let primary = cluster.primary_of_slot(cluster.key_slot(&key)).port;
        assert_eq!(stored(&cluster, primary, &key), "1", "{key} on its primary");
        ports.insert(primary);
    }
    assert_eq!(ports.len(), 3, "the keys cover every primary");
    assert_eq!(conn.router().moved(), 0, "no request needed a redirect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moved_slots_are_followed_and_the_command_runs_once() {
    let cluster = RedisCluster::start(3, 0);
    let conn = connect(&cluster).await;
    let primaries: Vec<_> = cluster.nodes().into_iter().filter(|n| n.primary).collect();

    // A slot migrated after the client read the table (an empty slot moves with
    // CLUSTER SETSLOT ... NODE on every primary, the new owner first, which first gets
    // the highest config epoch so that a heartbeat of the old owner cannot take the slot
    // back).
    let key = "moved:{a}:w";
    let slot = cluster.key_slot(key);
    let from = cluster.primary_of_slot(slot);
    let to = primaries.iter().find(|n| n.port != from.port).unwrap();
    let slot_arg = slot.to_string();
    let setslot = |port| {
        let out = cluster.cli(port, &["cluster", "setslot", &slot_arg, "node", &to.id]);
        assert_eq!(out.trim(), "OK", "setslot on {port}");
    };
    let bumped = cluster.cli(to.port, &["cluster", "bumpepoch"]);
    assert!(
        bumped.starts_with("BUMPED") || bumped.starts_with("STILL"),
        "{bumped}"
    );
    setslot(to.port);
    for n in primaries.iter().filter(|n| n.port != to.port) {
        setslot(n.port);
    }
    assert_eq!(
        conn.router().addr_of(slot).map(|a| port_of(&a)),
        Some(from.port)
    );
    assert_eq!(incr(&conn, key, 1).await.unwrap(), 1);
    assert_eq!(
        stored(&cluster, to.port, key),
        "1",
        "ran once, on the new owner"
    );
    assert!(conn.router().moved() >= 1);
    // The route follows the move. (The refresh the MOVED started may read a node that has
    // not heard of the move yet, on two busy cores: the table converges once every node
    // agrees.)
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while conn.router().addr_of(slot).map(|a| port_of(&a)) != Some(to.port) {
        assert!(
            std::time::Instant::now() < deadline,
            "the route of slot {slot} never followed the move: {:?}",
            conn.router().addr_of(slot)
        );
        settle().await;
        let _ = conn.router().refresh_for_test().await;
    }

    // A transaction on that slot: the aborted MULTI/EXEC is resent whole, once. (First let
    // the refresh the MOVED started finish, so it does not undo the stale entry.)
    settle().await;
    let moved = conn.router().moved();
    conn.router()
        .force_slot(slot, &format!("127.0.0.1:{}", from.port));
    let mut expire = redis::cmd("PEXPIRE");
    expire.arg(key).arg(60_000);
    let mut add = redis::cmd("HINCRBY");
    add.arg(key).arg("f").arg(10);
    let tx = Request::transaction(key, [add, expire]);
    let replies = conn.call(&tx, TIMEOUT).await.unwrap();
    assert_eq!(replies, vec![redis::Value::Int(11), redis::Value::Int(1)]);
    assert_eq!(stored(&cluster, to.port, key), "11");
    assert_eq!(conn.router().moved(), moved + 1);

    // A script (not loaded on the stale node either) through a stale table entry.
    let scripts = Scripts::new();
    let window = "moved:{b}:w";
    let wslot = cluster.key_slot(window);
    let owner = cluster.primary_of_slot(wslot).port;
    let stale = primaries.iter().find(|n| n.port != owner).unwrap().port;
    conn.router()
        .force_slot(wslot, &format!("127.0.0.1:{stale}"));
    let call = |mode, cost| counter_call(window, mode, cost);
    let a = scripts
        .counter(&conn, TIMEOUT, call(Mode::Take, 3))
        .await
        .unwrap();
    assert!(a.fits);
    let level = scripts
        .counter(&conn, TIMEOUT, call(Mode::Level, 0))
        .await
        .unwrap();
    assert_eq!(level.level, 3, "charged exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_redirects_run_on_the_importing_node_once() {
    let cluster = RedisCluster::start(3, 0);
    let conn = connect(&cluster).await;
    let key = "ask:{c}:w";
    let slot = cluster.key_slot(key);
    let from = cluster.primary_of_slot(slot);
    let to = cluster
        .nodes()
        .into_iter()
        .find(|n| n.primary && n.port != from.port)
        .unwrap();
    let s = slot.to_string();
    let ok = |port, args: &[&str]| assert_eq!(cluster.cli(port, args).trim(), "OK", "{args:?}");
    ok(to.port, &["cluster", "setslot", &s, "importing", &from.id]);
    ok(from.port, &["cluster", "setslot", &s, "migrating", &to.id]);

    // The key is not on the old owner: ASK, then ASKING + the command on the new one.
    assert_eq!(incr(&conn, key, 1).await.unwrap(), 1);
    let mut add = redis::cmd("HINCRBY");
    add.arg(key).arg("f").arg(10);
    let mut expire = redis::cmd("PEXPIRE");
    expire.arg(key).arg(60_000);
    let replies = conn
        .call(&Request::transaction(key, [add, expire]), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(replies[0], redis::Value::Int(11));
    let scripts = Scripts::new();
    let call = counter_call("ask:{c}:w2", Mode::Take, 2);
    assert!(scripts.counter(&conn, TIMEOUT, call).await.unwrap().fits);
    assert_eq!(conn.router().moved(), 0);
    assert_eq!(
        conn.router().addr_of(slot).map(|a| port_of(&a)),
        Some(from.port),
        "ASK does not change the table"
    );

    // Finish the migration: everything ran once, on the new owner.
    let mut primaries: Vec<_> = cluster.nodes().into_iter().filter(|n| n.primary).collect();
    primaries.sort_by_key(|n| n.port != to.port);
    for n in primaries {
        ok(n.port, &["cluster", "setslot", &s, "node", &to.id]);
    }
    assert_eq!(stored(&cluster, to.port, key), "11");
    assert!(cluster.cli(from.port, &["exists", key]).contains("MOVED"));
    assert_eq!(incr(&conn, key, 1).await.unwrap(), 12);
}

/// Lets a background topology refresh (started by a redirect or an error) finish, so that
/// it does not replace a slot entry a test forces next.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(400)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_may_have_run_is_never_sent_again() {
    let cluster = RedisCluster::start(3, 0);
    let conn = connect(&cluster).await;
    let key = "cut:{d}:w";
    let slot = cluster.key_slot(key);
    let primary = cluster.primary_of_slot(slot).port;
    let proxy = CuttingProxy::start(primary).await;
    conn.router().force_slot(slot, proxy.addr());
    assert_eq!(incr(&conn, key, 5).await.unwrap(), 5);

    // A refund (HINCRBY -1) runs in Redis, then the connection breaks before the reply.
    proxy.arm();
    let err = incr(&conn, key, -1).await.unwrap_err();
    assert!(matches!(err, StateError::Unavailable(_)), "{err:?}");
    assert_eq!(proxy.cuts(), 1);
    assert_eq!(stored(&cluster, primary, key), "4", "refunded exactly once");

    // The counter script's refund, through the same cut.
    let scripts = Scripts::new();
    let window = "cut:{d}:win";
    let call = |mode, cost| counter_call(window, mode, cost);
    settle().await;
    conn.router().force_slot(slot, proxy.addr());
    scripts
        .counter(&conn, TIMEOUT, call(Mode::Take, 3))
        .await
        .unwrap();
    proxy.arm();
    let err = scripts
        .counter(&conn, TIMEOUT, call(Mode::Refund, 1))
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::Unavailable(_)), "{err:?}");
    assert_eq!(proxy.cuts(), 2);
    let level = scripts
        .counter(&conn, TIMEOUT, call(Mode::Level, 0))
        .await
        .unwrap();
    assert_eq!(level.level, 2, "refunded exactly once");

    // The END-OF-MESSAGE read-and-delete: it ran (the session is gone), and the call
    // fails rather than answering from a second, empty read.
    let (charged, eom) = ("cut:{m:X}:charged", "cut:{m:X}:eom");
    let mslot = cluster.key_slot(charged);
    let mprimary = cluster.primary_of_slot(mslot).port;
    cluster.cli(mprimary, &["sadd", charged, "k1"]);
    let mproxy = CuttingProxy::start(mprimary).await;
    settle().await;
    conn.router().force_slot(mslot, mproxy.addr());
    let (got, _) = scripts
        .session_read(&conn, TIMEOUT, charged, eom)
        .await
        .unwrap();
    assert_eq!(got, vec!["k1".to_string()]);
    mproxy.arm();
    let err = scripts
        .session_take(&conn, TIMEOUT, charged, eom)
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::Unavailable(_)), "{err:?}");
    assert_eq!(cluster.cli(mprimary, &["exists", charged]).trim(), "0");

    // The client recovers by itself (new connections, the real table).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match incr(&conn, key, 1).await {
            Ok(v) => {
                assert_eq!(v, 5);
                break;
            }
            Err(e) => assert!(tokio::time::Instant::now() < deadline, "{e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_command_is_not_sent_again() {
    let cluster = RedisCluster::start(3, 0);
    // The nodes' reply timeout (200 ms) ends the call, well within the call's own bound:
    // a client resending after a timeout would do it here.
    let conn = Conn::connect(
        &cluster.urls(),
        &Default::default(),
        Duration::from_millis(200),
    )
    .await
    .unwrap()
    .0;
    let key = "stall:{e}:w";
    let primary = cluster.primary_of_slot(cluster.key_slot(key)).port;
    assert_eq!(incr(&conn, key, 5).await.unwrap(), 5);
    cluster.pause_node(primary);
    let started = std::time::Instant::now();
    let r = conn.call(&hincrby(key, -1), TIMEOUT).await;
    assert_eq!(r.unwrap_err(), StateError::Timeout);
    assert!(started.elapsed() < Duration::from_millis(600));
    cluster.resume_node(primary);
    // The refund was waiting in the socket: it runs once when the node goes on.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while stored(&cluster, primary, key) != "4" {
        assert!(std::time::Instant::now() < deadline, "the refund never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stored(&cluster, primary, key), "4", "and only once");
    assert_eq!(incr(&conn, key, 1).await.unwrap(), 5);
}

#[test]
fn call_errors_map_to_state_errors() {
    assert_eq!(StateError::from(CallError::Timeout), StateError::Timeout);
    assert!(matches!(
        StateError::from(CallError::Connection("reset".into())),
        StateError::Unavailable(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_refreshes_are_rate_limited() {
    let cluster = RedisCluster::start(3, 0);
    let conn = connect(&cluster).await;
    // `CLUSTER SLOTS` calls served by all nodes so far.
    let slots_calls = || -> u64 {
        cluster
            .nodes()
            .iter()
            .map(|n| {
                let stats = cluster.cli(n.port, &["info", "commandstats"]);
                stats
                    .lines()
                    .find_map(|l| l.strip_prefix("cmdstat_cluster|slots:calls="))
                    .and_then(|rest| rest.split(',').next()?.parse().ok())
                    .unwrap_or(0)
            })
            .sum()
    };
    let before = slots_calls();
    // Every call fails with a connection error (nothing listens on port 1), and each one
    // asks for a refresh (which puts the real owner back, so the entry is forced again).
    let key = "rate:{f}:w";
    let slot = key_slot(key.as_bytes());
    let started = std::time::Instant::now();
    let mut failures = 0;
    while started.elapsed() < Duration::from_millis(300) {
        conn.router().force_slot(slot, "127.0.0.1:1");
        if incr(&conn, key, 1).await.is_err() {
            failures += 1;
        }
    }
    settle().await;
    let refreshes = slots_calls() - before;
    assert!(failures >= 20, "{failures}");
    // At most one every 100 ms (plus one in flight at the end).
    assert!(
        (1..=5).contains(&refreshes),
        "{refreshes} refreshes for {failures} failures"
    );
}

/// A write on a primary without replicas has nothing to wait for, whatever the policy: its
/// confirmation is skipped (no future per charge), and would be `Ok` at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_a_primary_without_replicas_needs_no_confirmation() {
    use super::replication::WaitPolicy;
    let cluster = RedisCluster::start(3, 0);
    let conn = connect(&cluster).await;
    let (_, landed) = conn
        .call_landed(&hincrby("nowait:{k}:w", 1), TIMEOUT)
        .await
        .unwrap();
    assert!(
        conn.confirmation(&landed, TIMEOUT).unwrap().is_none(),
        "the policy waits for none"
    );
    conn.wait_for_replicas(WaitPolicy {
        replicas: 1,
        timeout: Duration::from_millis(100),
    });
    assert!(
        conn.confirmation(&landed, TIMEOUT).unwrap().is_none(),
        "no replica to wait for"
    );
    conn.confirm(&landed, TIMEOUT)
        .await
        .expect("confirmed at once");
}

/// A write is confirmed once its primary's replica has it; with the replica frozen and its
/// link cut, the confirmation fails within the WAIT bound (the write is not acknowledged).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_confirmed_only_by_a_live_replica() {
    use super::replication::WaitPolicy;
    let cluster = RedisCluster::start(3, 1);
    let conn = connect(&cluster).await;
    conn.wait_for_replicas(WaitPolicy {
        replicas: 1,
        timeout: Duration::from_millis(100),
    });
    let key = "wait:{k}:w";
    // A fresh cluster lists its replicas once they have gossiped a replication offset;
    // health probes read the topology again.
    let primary = conn.router().addr_of(key_slot(b"k")).unwrap();
    let started = std::time::Instant::now();
    while conn.router().replicas_waited_for(&primary) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no replica listed"
        );
        conn.ready().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, landed) = conn.call_landed(&hincrby(key, 1), TIMEOUT).await.unwrap();
    assert!(
        conn.confirmation(&landed, TIMEOUT).unwrap().is_some(),
        "a listed replica is waited for"
    );
    conn.confirm(&landed, TIMEOUT)
        .await
        .expect("the replica confirms");
    let primary = port_of(landed.node.addr());
    let info = cluster.cli(primary, &["info", "replication"]);
    let replica: u16 = info
        .lines()
        .find_map(|l| l.strip_prefix("slave0:"))
        .and_then(|l| l.split(',').find_map(|f| f.strip_prefix("port=")))
        .and_then(|p| p.trim().parse().ok())
        .expect("a replica");
    cluster.pause_node(replica);
    assert_eq!(
        cluster
            .cli(primary, &["client", "kill", "type", "replica"])
            .trim(),
        "1"
    );
    let (_, landed) = conn.call_landed(&hincrby(key, 1), TIMEOUT).await.unwrap();
    let started = std::time::Instant::now();
    let confirmed = conn.confirm(&landed, TIMEOUT).await;
    cluster.resume_node(replica);
    assert!(
        matches!(confirmed, Err(StateError::Unavailable(ref m)) if m.contains("replicas")),
        "{confirmed:?}"
    );
    assert!(started.elapsed() < TIMEOUT, "bounded by the WAIT timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_left_the_cluster_is_dropped_and_the_seeds_are_kept() {
    let cluster = RedisCluster::start(3, 1);
    let seeds = cluster.primary_urls();
    let conn = Conn::connect(&seeds, &Default::default(), TIMEOUT)
        .await
        .unwrap()
        .0;
    let nodes = cluster.nodes();
    let replica = nodes
        .iter()
        .find(|n| !n.primary)
        .unwrap_or_else(|| panic!("a replica among {nodes:?}"))
        .clone();
    let replica_addr = format!("127.0.0.1:{}", replica.port);
    // CLUSTER SLOTS lists a replica once it has replicated something: write to every
    // primary, then read the topology until every node shows.
    for i in 0..30 {
        incr(&conn, &format!("fill:{{k{i}}}:w"), 1).await.unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while conn.router().known_nodes().len() < 6 {
        assert!(
            std::time::Instant::now() < deadline,
            "replicas are known from CLUSTER SLOTS: {:?}",
            conn.router().known_nodes()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        conn.router().refresh_for_test().await.unwrap();
    }
    assert!(conn.router().known_nodes().contains(&replica_addr));
    assert_eq!(conn.router().known_nodes().len(), 6);

    // The replica leaves: it forgets the cluster, every other node forgets it.
    cluster.cli(replica.port, &["cluster", "reset", "hard"]);
    for node in cluster.nodes() {
        if node.port != replica.port {
            cluster.cli(node.port, &["cluster", "forget", &replica.id]);
        }
    }
    // A node lists a replica in CLUSTER SLOTS only once gossip has told it the replica's
    // offset, so the refresh that asks a node other than the first may briefly miss one of
    // the remaining replicas: refresh until the topology settles (or give up loudly).
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let known = loop {
        conn.router().refresh_for_test().await.unwrap();
        let known = conn.router().known_nodes();
        if known.len() == 5 && !known.contains(&replica_addr) {
            break known;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the node that left is dropped and the five others stay known: {known:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for seed in &seeds {
        let addr = seed.trim_start_matches("redis://");
        assert!(
            known.iter().any(|k| k == addr),
            "seed {addr} kept: {known:?}"
        );
    }
    // Routing still works.
    assert_eq!(incr(&conn, "left:{a}:w", 1).await.unwrap(), 1);
}

#[tokio::test]
async fn connection_attempts_to_a_failing_node_back_off() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    // A "node" that accepts and closes at once: every connection attempt fails.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let attempts = Arc::new(AtomicUsize::new(0));
    let count = attempts.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::Relaxed);
            drop(socket);
        }
    });
    // As URLs set it up: no command is sent while connecting, so connecting "succeeds"
    // and the first request finds the connection closed.
    let redis = redis::RedisConnectionInfo::default().set_skip_set_lib_name();
    let node = super::node::Connector::new(redis, None, TIMEOUT)
        .node(&addr)
        .unwrap();
    let mut pipe = redis::Pipeline::new();
    pipe.cmd("PING");
    let calls = 200;
    let started = std::time::Instant::now();
    for _ in 0..calls {
        assert!(node.send(&pipe).await.is_err());
    }
    let elapsed = started.elapsed();
    let made = attempts.load(Ordering::Relaxed);
    assert!(made >= 1, "the node was tried");
    // Waits are at least 25 ms (half of the first 50 ms) and double: far fewer attempts
    // than calls, whatever the speed of the machine.
    let bound = 1 + (elapsed.as_millis() / 25) as usize;
    assert!(made <= bound, "{made} attempts in {elapsed:?}");
    assert!(made < calls / 4, "{made} attempts for {calls} calls");
}

/// `cmdstat_evalsha` calls of the node at `port` (0 if none yet).
fn evalsha_calls(cluster: &RedisCluster, port: u16) -> u64 {
    let stats = cluster.cli(port, &["info", "commandstats"]);
    stats
        .lines()
        .find_map(|l| l.trim().strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

/// `count` keys whose slots the primary at `port` serves, each in a slot of its own.
fn keys_on(cluster: &RedisCluster, port: u16, tag: &str, count: usize) -> Vec<String> {
    let mut keys = Vec::new();
    let mut slots = std::collections::HashSet::new();
    for i in 0.. {
        let key = format!("co:{{{tag}{i}}}:w");
        let slot = cluster.key_slot(&key);
        if cluster.primary_of_slot(slot).port == port && slots.insert(slot) {
            keys.push(key);
            if keys.len() == count {
                break;
            }
        }
    }
    keys
}

// One thread: the flush task runs only once every op is queued (as in the quota service).
#[tokio::test]
async fn counter_ops_waiting_together_go_in_one_script_call_per_node() {
    let cluster = RedisCluster::start(3, 0);
    let conn = connect(&cluster).await;
    let scripts = Scripts::new();
    let primaries: Vec<u16> = cluster
        .nodes()
        .into_iter()
        .filter(|n| n.primary)
        .map(|n| n.port)
        .collect();
    // Load the script everywhere first, so that NOSCRIPT does not add calls.
    for &port in &primaries {
        let key = &keys_on(&cluster, port, "warm", 1)[0];
        scripts
            .counter(&conn, TIMEOUT, counter_call(key, Mode::Take, 1))
            .await
            .unwrap();
    }
    let before: Vec<u64> = primaries
        .iter()
        .map(|&p| evalsha_calls(&cluster, p))
        .collect();

    // Five keys per primary, every one in its own slot; takes, then checks and levels.
    let keys: Vec<String> = primaries
        .iter()
        .flat_map(|&p| keys_on(&cluster, p, "k", 5))
        .collect();
    let takes = keys.iter().enumerate().map(|(i, k)| {
        scripts.counter(
            &conn,
            TIMEOUT,
            counter_call(k, Mode::Take, 1 + i as u64 % 3),
        )
    });
    let answers = futures_util::future::join_all(takes).await;
    for (i, a) in answers.into_iter().enumerate() {
        let a = a.unwrap();
        assert!(a.fits && a.level == 0, "{i}: {a:?}");
    }
    for (i, &port) in primaries.iter().enumerate() {
        assert_eq!(
            evalsha_calls(&cluster, port) - before[i],
            1,
            "one script call on {port} for its five takes"
        );
    }
    let reads = keys.iter().enumerate().map(|(i, k)| {
        let mode = if i % 2 == 0 { Mode::Level } else { Mode::Check };
        scripts.counter(&conn, TIMEOUT, counter_call(k, mode, 9))
    });
    for (i, a) in futures_util::future::join_all(reads)
        .await
        .into_iter()
        .enumerate()
    {
        let a = a.unwrap();
        let charged = 1 + i as u64 % 3;
        assert_eq!(a.level, charged, "{i}: charged exactly once");
        if i % 2 == 1 {
            assert_eq!(a.fits, charged + 9 <= 10, "{i}: {a:?}");
        }
    }
    for (i, &port) in primaries.iter().enumerate() {
        assert_eq!(evalsha_calls(&cluster, port) - before[i], 2, "{port}");
    }
    assert_eq!(conn.router().moved(), 0);
}

#[tokio::test]
async fn ops_a_node_does_not_serve_run_once_on_the_right_node() {
    let cluster = RedisCluster::start(3, 0);
    let conn = connect(&cluster).await;
    let scripts = Scripts::new();
    let primaries: Vec<_> = cluster.nodes().into_iter().filter(|n| n.primary).collect();
    let (a, b) = (&primaries[0], &primaries[1]);
    // Three keys of `a`, and one of `b` whose table entry wrongly says `a`: the four go to
    // `a` in one call, which does not run the fourth; it is sent again alone and followed
    // to `b` (MOVED).
    let mut keys = keys_on(&cluster, a.port, "s", 3);
    let stray = keys_on(&cluster, b.port, "t", 1).remove(0);
    conn.router()
        .force_slot(cluster.key_slot(&stray), &format!("127.0.0.1:{}", a.port));
    keys.push(stray.clone());
    let takes = keys
        .iter()
        .map(|k| scripts.counter(&conn, TIMEOUT, counter_call(k, Mode::Take, 2)));
    for a in futures_util::future::join_all(takes).await {
        assert!(a.unwrap().fits);
    }
    assert!(conn.router().moved() >= 1, "the stray op was redirected");
    let stray_slot = cluster.key_slot(&stray).to_string();
    assert_eq!(
        cluster
            .cli(a.port, &["cluster", "countkeysinslot", &stray_slot])
            .trim(),
        "0",
        "nothing written on the wrong node"
    );
    settle().await;

    // A slot being migrated from `a` to `b`: a key still on `a` is charged there with the
    // others; a key not there any more (never created) goes to `b` (ASK), once.
    let s_key = keys_on(&cluster, a.port, "m", 1).remove(0);
    let slot = cluster.key_slot(&s_key);
    let present = s_key.clone();
    let missing = {
        // Another key of the same slot (same hash tag), not created yet.
        let tag = &s_key[s_key.find('{').unwrap()..=s_key.find('}').unwrap()];
        format!("co:{tag}:other")
    };
    scripts
        .counter(&conn, TIMEOUT, counter_call(&present, Mode::Take, 1))
        .await
        .unwrap();
    let s = slot.to_string();
    let ok = |port, args: &[&str]| assert_eq!(cluster.cli(port, args).trim(), "OK", "{args:?}");
    ok(b.port, &["cluster", "setslot", &s, "importing", &a.id]);
    ok(a.port, &["cluster", "setslot", &s, "migrating", &b.id]);
    let others = keys_on(&cluster, a.port, "n", 2);
    let mut batch: Vec<&str> = others.iter().map(String::as_str).collect();
    batch.push(&present);
    batch.push(&missing);
    let takes = batch
        .iter()
        .map(|k| scripts.counter(&conn, TIMEOUT, counter_call(k, Mode::Take, 3)));
    for (k, a) in batch
        .iter()
        .zip(futures_util::future::join_all(takes).await)
    {
        assert!(a.unwrap().fits, "{k}");
    }
    let stored_level: u64 = cluster
        .cli(a.port, &["hvals", &present])
        .split_whitespace()
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    assert_eq!(stored_level, 4, "charged on the migrating node");
    // The importing node holds the missing key: read with the client, which follows ASK.
    let read = scripts
        .counter(&conn, TIMEOUT, counter_call(&missing, Mode::Level, 0))
        .await
        .unwrap();
    assert_eq!(read.level, 3, "charged once, on the importing node");
    assert_eq!(
        cluster
            .cli(a.port, &["cluster", "countkeysinslot", &s])
            .trim(),
        "1",
        "only the key that was there before, on the migrating node"
    );
}
