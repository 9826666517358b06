//! The client against nodes that misbehave: one that pages forever, one
//! that redirects a token to a plaintext address, and the token never
//! shown in debug output.

// Tests fail by panicking.
#![allow(clippy::unwrap_used)]

use meta_client::{ClientBuilder, ClientError, Consistency};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A fake node on loopback: answers each request with `answer(first line)`
/// (status line and JSON body).
async fn fake_node(answer: fn(&str) -> (&'static str, String, Option<String>)) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let text = String::from_utf8_lossy(&head).into_owned();
                let first = text.lines().next().unwrap_or("").to_string();
                let (status, body, location) = answer(&first);
                let location = location
                    .map(|l| format!("location: {l}\r\n"))
                    .unwrap_or_default();
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n{location}\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_node_that_pages_forever_is_an_error_not_a_loop() {
    let addr = fake_node(|_| {
        (
            "200 OK",
            r#"{"items":[],"next":"a","revision":1}"#.into(),
            None,
        )
    })
    .await;
    let client = ClientBuilder::new([addr]).build().unwrap();
    let listing = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        client.list_all("", usize::MAX, Consistency::Stale),
    )
    .await
    .expect("no endless paging");
    assert!(
        matches!(listing, Err(ClientError::Decode { .. })),
        "{listing:?}"
    );
}

#[tokio::test]
async fn a_redirect_never_takes_a_token_to_plaintext_beyond_loopback() {
    let addr = fake_node(|first| {
        if first.starts_with("GET /v1/cluster/status") {
            // It even claims the target is a member.
            let status =
                r#"{"members":{"2":{"api":"10.255.255.1:7700","raft":"x:1","voter":true}}}"#;
            ("200 OK", status.into(), None)
        } else {
            (
                "307 Temporary Redirect",
                r#"{"error":{"code":"not_leader","message":"go there"}}"#.into(),
                Some("http://10.255.255.1:7700/v1/kv/k".into()),
            )
        }
    })
    .await;
    let client = ClientBuilder::new([addr])
        .token("root.s3cret")
        .build()
        .unwrap();
    let error = client.put("k", b"v").await.unwrap_err();
    assert!(matches!(error, ClientError::Redirect(_)), "{error}");
    assert!(!error.to_string().contains("s3cret"));
}

#[test]
fn debug_output_never_shows_the_token() {
    let builder = ClientBuilder::new(["127.0.0.1:7700"]).token("root.s3cret");
    assert!(!format!("{builder:?}").contains("s3cret"));
    let client = builder.build().unwrap();
    let shown = format!("{client:?}");
    assert!(
        !shown.contains("s3cret") && shown.contains("redacted"),
        "{shown}"
    );
}
