//! Garbage on the peer port and malformed client requests get clear errors
//! and never take the node down.

use std::time::Duration;

use meta_node::{Config, Engine, Node};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn node(dir: &std::path::Path) -> Node {
    let config = Config {
        listen: "127.0.0.1:0".into(),
        raft_listen: "127.0.0.1:0".into(),
        advertise: Some("127.0.0.1:1".into()),
        advertise_raft: Some("127.0.0.1:2".into()),
        data_dir: dir.to_path_buf(),
        engine: Engine::Mem,
        // These cases are about framing and parsing: no credentials, and a
        // plaintext peer port so garbage reaches the frame decoder (with
        // TLS on, it would not get past the handshake: see security.rs).
        insecure: true,
        ..Config::default()
    };
    let node = Node::start(config).await.unwrap();
    assert_eq!(node.wait_for_leader(Duration::from_secs(10)).await, Some(1));
    node
}

/// Sends `bytes` on a fresh peer connection; returns whether the node
/// closed it (it must, for garbage).
async fn peer_garbage(node: &Node, bytes: &[u8]) -> bool {
    let mut stream = TcpStream::connect(node.raft_addr).await.unwrap();
    let _ = stream.write_all(bytes).await;
    let mut buf = [0u8; 16];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_peer_port_closes_that_connection_only() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path()).await;
    assert!(
        peer_garbage(&node, b"GET / HTTP/1.1\r\n\r\n").await,
        "bad magic must close"
    );
    let mut huge = meta_node::transport::MAGIC.to_vec();
    huge.extend_from_slice(&u32::MAX.to_be_bytes());
    assert!(
        peer_garbage(&node, &huge).await,
        "an oversized frame must close"
    );
    let mut junk = meta_node::transport::MAGIC.to_vec();
    junk.extend_from_slice(&8u32.to_be_bytes());
    junk.extend_from_slice(&[0xFF; 8]);
    assert!(
        peer_garbage(&node, &junk).await,
        "an undecodable frame must close"
    );
    // The node still leads and serves.
    let url = format!("http://{}/v1/kv/k", node.api_addr);
    let client = meta_node::client::http_builder().build().unwrap();
    assert!(
        client
            .put(&url)
            .body("v")
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );
    assert_eq!(node.reader.get(b"k").as_deref(), Some(&b"v"[..]));
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_client_requests_get_json_errors_with_stable_codes() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path()).await;
    let base = format!("http://{}", node.api_addr);
    let client = meta_node::client::http_builder().build().unwrap();
    // `k` exists: `If-None-Match: *` on it fails.
    let put = client.put(format!("{base}/v1/kv/k")).body("v").send();
    assert!(put.await.unwrap().status().is_success());
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            client.put(format!("{base}/v1/shards")).body("{not json"),
            400,
            "bad_request",
        ),
        (
            client
                .put(format!("{base}/v1/shards"))
                .body(r#"{"expected_version":0,"shards":{"1":{"replicas":[9]}}}"#),
            409,
            "unknown_node",
        ),
        (client.get(format!("{base}/v1/nothing")), 404, "not_found"),
        (client.get(format!("{base}/v1/kv/absent")), 404, "not_found"),
        (
            client
                .put(format!("{base}/v1/cluster/nodes/abc"))
                .body("{}"),
            400,
            "bad_request",
        ),
        (
            client.get(format!("{base}/v1/kv?limit=99999999")),
            400,
            "bad_request",
        ),
        (
            client.get(format!("{base}/v1/kv/x?stale=maybe")),
            400,
            "bad_request",
        ),
        (
            client
                .put(format!("{base}/v1/kv/k"))
                .header("if-match", "W/\"3\"")
                .body("v"),
            400,
            "bad_request",
        ),
        (
            client
                .put(format!("{base}/v1/kv/k"))
                .header("if-match", "\"1\", \"2\"")
                .body("v"),
            400,
            "bad_request",
        ),
        (client.delete(format!("{base}/v1/kv")), 400, "bad_request"),
        (
            client.delete(format!("{base}/v1/kv?prefix=")),
            400,
            "bad_request",
        ),
        (
            client
                .post(format!("{base}/v1/txn"))
                .body(r#"{"compare":[{"key":"k","op":"<","exists":true}]}"#),
            400,
            "bad_request",
        ),
        (
            client
                .post(format!("{base}/v1/txn"))
                .body(r#"{"compare":[{"key":"k","op":"=","version":1,"value":"x"}]}"#),
            400,
            "bad_request",
        ),
        (
            client
                .post(format!("{base}/v1/txn"))
                .body(r#"{"success":[{"put":{"key":"k"}}]}"#),
            400,
            "bad_request",
        ),
        (
            client
                .post(format!("{base}/v1/txn"))
                .body(r#"{"success":[{"frobnicate":{"key":"k"}}]}"#),
            400,
            "bad_request",
        ),
        (
            client
                .post(format!("{base}/v1/txn"))
                .body(r#"{"success":[{"put":{"key":"k","value_base64":"!!"}}]}"#),
            400,
            "bad_request",
        ),
        (
            client.post(format!("{base}/v1/txn")).body(format!(
                r#"{{"success":[{}]}}"#,
                vec![r#"{"get":{"key":"k"}}"#; 129].join(",")
            )),
            400,
            "bad_request",
        ),
        (
            client
                .put(format!("{base}/v1/kv/k"))
                .header("if-none-match", "*")
                .body("v"),
            412,
            "precondition_failed",
        ),
        (
            client
                .put(format!("{base}/v1/kv/big"))
                // One byte over the default `limits.max_value_bytes` (a far
                // larger body may see the connection closed under it while
                // still sending: `budgets.rs` checks that case).
                .body(vec![b'a'; (1 << 20) + 1]),
            413,
            "payload_too_large",
        ),
        (
            client
                .put(format!("{base}/v1/kv/{}", "k".repeat(600)))
                .body("v"),
            400,
            "invalid_key",
        ),
        (
            client
                .post(format!("{base}/v1/cas"))
                .body(r#"{"key":"c","expected":"x","new":"y"}"#),
            409,
            "cas_mismatch",
        ),
    ];
    for (request, status, code) in cases {
        let response = request.send().await.unwrap();
        let got = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}"
        );
    }
    node.shutdown().await.unwrap();
}
