//! Serves an empty policy set (every request gets DUNNO) with the real edge, for
//! benchmarking the edge alone against `dunno-server`:
//!
//! ```text
//! cargo run --release -p sluice-edge --example serve_empty -- 127.0.0.1:10031
//! ```

use sluice_edge::{EdgeConfig, ListenAddr, Listener};
use sluice_engine::{
    Engine, EngineSettings, MemoryState, MemoryStateSettings, PolicySet, SystemClock,
};
use std::sync::Arc;

#[tokio::main]
async fn main() {
    let addr: ListenAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:10031".into())
        .parse()
        .expect("listen address");
    let state = MemoryState::new(Arc::new(SystemClock), MemoryStateSettings::default());
    let engine = Arc::new(Engine::new(
        PolicySet::empty(),
        Arc::new(state),
        EngineSettings::default(),
    ));
    let listener = Listener::bind(&addr).await.expect("bind");
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    sluice_edge::run(listener, engine, EdgeConfig::default(), stop).await;
}
