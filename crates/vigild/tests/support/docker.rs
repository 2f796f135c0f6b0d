//! The docker test bed (`bench/docker-up.sh`): calls to its Engine API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use vigil_checks::probe::docker::{api, negotiate, socket_path};

pub fn call(method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let socket = socket_path(None);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let version = negotiate(&socket).await.expect("negotiate");
            let body = body.map(|b| serde_json::to_vec(&b).unwrap());
            let (status, bytes) = api::request(
                &socket,
                method,
                &format!("/v{version}{path}"),
                body.as_deref(),
            )
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
            (
                status,
                serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            )
        })
}
