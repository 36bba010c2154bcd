//! How `RedisState` connects: passwords and ACL users, TLS-only Redis (single node and
//! cluster, client certificates, a server name), a hung seed beside a healthy one, and a
//! patient start that waits for Redis. Every Redis here is a real `redis-server`.

mod common;

use common::{compare, settings, START_MS};
use sluice_engine::window::WindowSpec;
use sluice_engine::{CounterBatch, CounterOp, ManualClock, OpKind, State, StateError};
use sluice_redis::{
    ConnectError, RedisState, RedisStateSettings, RedisTls, Topology, REDIS_COMMANDS,
};
use sluice_test_support::{
    AclUser, CertFiles, RedisCluster, RedisOptions, RedisServer, RedisTlsFiles, TestPki,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn take(key: &str) -> CounterBatch {
    CounterBatch {
        groups: vec![vec![CounterOp {
            key: key.into(),
            limit: 10,
            window: WindowSpec::new(60_000, 60),
            kind: OpKind::Take { cost: 1 },
        }]],
        ..CounterBatch::default()
    }
}

/// What the quota service's health probe runs: a dry-run check.
fn probe() -> CounterBatch {
    CounterBatch {
        dry_run: true,
        groups: vec![vec![CounterOp {
            key: "_probe".into(),
            limit: 1,
            window: WindowSpec::new(60_000, 60),
            kind: OpKind::Check { cost: 1 },
        }]],
        ..CounterBatch::default()
    }
}

fn with_tls(prefix: &str, tls: RedisTls) -> RedisStateSettings {
    RedisStateSettings {
        tls,
        ..settings(prefix)
    }
}

/// Takes one unit of `key` with Redis's own clock; the count after it.
async fn used_after_take(state: &RedisState, key: &str) -> u64 {
    state.apply(&take(key)).await.expect("a take").groups[0][0].used
}

/// ACL rules allowing exactly [`REDIS_COMMANDS`] on the keys of `prefix`.
fn only_the_needed_commands(prefix: &str) -> Vec<String> {
    let mut rules = vec![format!("~{prefix}:*")];
    rules.extend(REDIS_COMMANDS.iter().map(|c| format!("+{c}")));
    rules
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_protected_cluster_works_with_the_password_and_with_a_restricted_acl_user() {
    let options = RedisOptions {
        password: Some("s3cret-pw".into()),
        acl_user: Some(AclUser {
            name: "sluice".into(),
            password: "acl-pw".into(),
            rules: only_the_needed_commands("acl"),
        }),
        tls: None,
    };
    let cluster = RedisCluster::start_with(3, 1, &options);
    assert!(cluster.urls()[0].contains(":s3cret-pw@"));

    // The default user, by the password in the URL, on every node the cluster announces.
    let clock = ManualClock::new(START_MS);
    let state = RedisState::connect_with(&cluster.urls(), settings("pw"))
        .await
        .unwrap()
        .with_test_clock(Arc::new(clock.clone()));
    compare(&state, &clock, 11, 300).await;

    // A user allowed exactly REDIS_COMMANDS on its prefix: every kind of batch works (the
    // comparison runs sessions, END-OF-MESSAGE, leases and refunds), and so do Redis's
    // own clock and the health probe.
    let urls = cluster.urls_as("sluice", "acl-pw");
    let acl = RedisState::connect_with(&urls, settings("acl"))
        .await
        .unwrap();
    assert_eq!(acl.topology(), Some(Topology::Cluster));
    for i in 1..=3 {
        assert_eq!(used_after_take(&acl, "Sender:a@example.com").await, i);
    }
    acl.apply(&probe()).await.expect("the health probe");
    let clock = ManualClock::new(START_MS);
    let acl = RedisState::connect_with(&urls, settings("acl"))
        .await
        .unwrap()
        .with_test_clock(Arc::new(clock.clone()));
    compare(&acl, &clock, 12, 300).await;
    // The restriction is real: the same user may not run anything else.
    let port = cluster.nodes()[0].port;
    let refused = cluster.cli(port, &["--user", "sluice", "--pass", "acl-pw", "flushall"]);
    assert!(refused.contains("NOPERM"), "{refused}");
    // ... nor touch keys outside its prefix.
    let other = RedisState::connect_with(&urls, settings("other"))
        .await
        .unwrap();
    let err = other.apply(&take("x")).await.unwrap_err();
    assert!(format!("{err}").contains("NOPERM"), "{err}");

    // A wrong password is a clear error.
    let wrong = cluster.urls_as("sluice", "wrong");
    let err = RedisState::connect_with(&wrong, settings("pw"))
        .await
        .err()
        .expect("a wrong password is refused");
    assert!(matches!(err, ConnectError::Auth(_)), "{err:?}");
    assert!(err.to_string().contains("user name or password"), "{err}");
    assert!(!err.to_string().contains("wrong"), "no password in {err}");
    // So is none at all.
    let bare: Vec<String> = cluster
        .nodes()
        .iter()
        .map(|n| format!("redis://127.0.0.1:{}", n.port))
        .collect();
    let err = RedisState::connect_with(&bare, settings("pw"))
        .await
        .err()
        .expect("no password is refused");
    assert!(err.to_string().contains("NOAUTH"), "{err}");
}

/// Server certificate for `names`, client certificate, and Redis options (TLS only,
/// `tls-auth-clients yes`).
fn tls_setup(pki: &TestPki, names: &[&str]) -> (RedisOptions, CertFiles) {
    let client = pki.client("sluice");
    let options = RedisOptions {
        tls: Some(RedisTlsFiles {
            ca_file: pki.ca_file().to_path_buf(),
            server: pki.server("redis", names),
            client: client.clone(),
            auth_clients: true,
        }),
        ..RedisOptions::default()
    };
    (options, client)
}

fn client_tls(pki: &TestPki, client: &CertFiles, server_name: Option<&str>) -> RedisTls {
    RedisTls {
        ca_file: Some(pki.ca_file().to_path_buf()),
        client_cert: Some(client.cert.clone()),
        client_key: Some(client.key.clone()),
        server_name: server_name.map(str::to_string),
    }
}

#[tokio::test]
async fn a_tls_only_redis_needs_the_right_ca_and_a_client_certificate() {
    let pki = TestPki::new("Redis test CA");
    let (options, client) = tls_setup(&pki, &["127.0.0.1"]);
    let server = RedisServer::start_with(&options);
    let url = server.url();
    assert!(url.starts_with("rediss://"), "{url}");

    let state = RedisState::connect_with(
        std::slice::from_ref(&url),
        with_tls("t", client_tls(&pki, &client, None)),
    )
    .await
    .unwrap();
    assert_eq!(state.topology(), Some(Topology::Single));
    assert_eq!(used_after_take(&state, "Sender:a@example.com").await, 1);
    assert_eq!(used_after_take(&state, "Sender:a@example.com").await, 2);
    assert_eq!(server.cli(&["dbsize"]).trim(), "1");

    // Without a client certificate Redis (tls-auth-clients yes) refuses.
    let no_cert = RedisTls {
        client_cert: None,
        client_key: None,
        ..client_tls(&pki, &client, None)
    };
    let err = RedisState::connect_with(std::slice::from_ref(&url), with_tls("t", no_cert))
        .await
        .err()
        .expect("refused without a client certificate");
    assert!(!err.is_permanent(), "{err}");

    // A certificate of another CA is refused by us.
    let other = TestPki::new("someone else's CA");
    let wrong_ca = RedisTls {
        ca_file: Some(other.ca_file().to_path_buf()),
        ..client_tls(&pki, &client, None)
    };
    let err = RedisState::connect_with(std::slice::from_ref(&url), with_tls("t", wrong_ca))
        .await
        .err()
        .expect("a server certificate of an unknown CA is refused");
    assert!(err.to_string().contains("certificate"), "{err}");

    // A name the certificate does not have is refused.
    let wrong_name = client_tls(&pki, &client, Some("redis.elsewhere"));
    let err = RedisState::connect_with(std::slice::from_ref(&url), with_tls("t", wrong_name))
        .await
        .err()
        .expect("a certificate for another name is refused");
    assert!(err.to_string().contains("certificate"), "{err}");

    // Plain redis:// to a TLS port fails (it does not hang beyond the timeout).
    let plain = url.replace("rediss://", "redis://");
    let mut fast = settings("t");
    fast.timeout = Duration::from_millis(500);
    assert!(RedisState::connect_with(&[plain], fast).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_is_reached_on_every_node_with_one_server_name() {
    let pki = TestPki::new("Redis test CA");
    // The certificate names a host, not the IPs the nodes announce (a managed service).
    let (options, client) = tls_setup(&pki, &["redis.internal"]);
    let cluster = RedisCluster::start_with(3, 1, &options);

    let tls = client_tls(&pki, &client, Some("redis.internal"));
    let state = RedisState::connect_with(&cluster.urls()[..1], with_tls("tls", tls))
        .await
        .unwrap();
    assert_eq!(state.topology(), Some(Topology::Cluster));
    for i in 0..30 {
        assert_eq!(
            used_after_take(&state, &format!("Sender:{i}@example.com")).await,
            1
        );
    }
    // Every primary was reached (over TLS: there is no plain port) and holds keys; the
    // replicas got them over TLS replication.
    let keys = |port: u16| -> u64 { cluster.cli(port, &["dbsize"]).trim().parse().unwrap() };
    for node in cluster.nodes() {
        if node.primary {
            assert!(keys(node.port) > 0, "primary {} holds no key", node.port);
            continue;
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while keys(node.port) == 0 {
            assert!(
                Instant::now() < deadline,
                "replica {} got no key",
                node.port
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // Verified against the IP it is reached at instead, the certificate does not fit.
    let by_ip = client_tls(&pki, &client, None);
    let err = RedisState::connect_with(&cluster.urls(), with_tls("tls", by_ip))
        .await
        .err()
        .expect("the certificate does not name 127.0.0.1");
    assert!(err.to_string().contains("certificate"), "{err}");
}

/// A listener on 127.0.0.1 that accepts connections and never answers; counts them.
async fn hung_listener() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::Relaxed);
            held.push(socket);
        }
    });
    (format!("redis://{addr}"), accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_seed_listed_first_does_not_block_the_start() {
    let cluster = RedisCluster::start(3, 0);
    let (hung, accepted) = hung_listener().await;
    let mut fast = settings("hung");
    fast.timeout = Duration::from_millis(300);

    // Alone, it is a timeout.
    let err = RedisState::connect_with(std::slice::from_ref(&hung), fast.clone())
        .await
        .err()
        .expect("a seed that never answers");
    assert_eq!(err, ConnectError::Timeout);

    // Listed before healthy seeds, it costs one timeout and the start succeeds.
    let mut urls = vec![hung];
    urls.extend(cluster.urls());
    let before = accepted.load(Ordering::Relaxed);
    let state = RedisState::connect_with(&urls, fast).await.unwrap();
    assert!(
        accepted.load(Ordering::Relaxed) > before,
        "the hung seed was asked first"
    );
    assert_eq!(used_after_take(&state, "Sender:a@example.com").await, 1);
}

#[tokio::test]
async fn a_patient_start_is_unavailable_until_redis_answers_then_works() {
    let mut server = RedisServer::start();
    let url = server.url();
    server.stop();
    let mut fast = settings("patient");
    fast.timeout = Duration::from_millis(250);

    let state = RedisState::start(&[url], fast).expect("valid settings");
    assert_eq!(state.topology(), None);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let err = state.apply(&take("k")).await.unwrap_err();
    assert!(matches!(err, StateError::Unavailable(_)), "{err:?}");
    assert!(state.apply(&probe()).await.is_err());
    assert_eq!(state.topology(), None);

    assert!(!state.wait_connected(Duration::from_millis(300)).await);

    server.restart();
    assert!(
        state.wait_connected(Duration::from_secs(30)).await,
        "never connected"
    );
    assert_eq!(state.topology(), Some(Topology::Single));
    assert_eq!(used_after_take(&state, "k").await, 1);

    // Settings that can never work fail at once instead.
    let bad = RedisTls {
        ca_file: Some("/nonexistent/ca.pem".into()),
        ..RedisTls::default()
    };
    let err = RedisState::start(&["rediss://127.0.0.1:1".into()], with_tls("p", bad))
        .err()
        .expect("an unreadable CA file");
    assert!(err.is_permanent(), "{err}");
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
}

#[test]
fn docs_list_exactly_the_commands_an_acl_user_needs() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/cluster.md");
    let docs = std::fs::read_to_string(path).unwrap();
    let line = docs
        .lines()
        .find(|l| l.starts_with("user sluice on "))
        .expect("docs/cluster.md shows the ACL user");
    let mut documented: Vec<&str> = line
        .split(' ')
        .filter_map(|w| w.strip_prefix('+'))
        .collect();
    let mut needed = REDIS_COMMANDS.to_vec();
    documented.sort_unstable();
    needed.sort_unstable();
    assert_eq!(documented, needed, "docs/cluster.md's ACL line");
}
