//! Using a cluster from Rust: `docs/client.md` walks through it.
//!
//! ```console
//! $ cargo run -q -p meta-client --example quickstart -- 127.0.0.1:7700
//! ```
//!
//! Endpoints are the arguments (`host:port` or URLs); the token is
//! `META_TOKEN`, else `./meta-data/root.token` (where `meta-node serve`
//! puts it); `META_CA` names the cluster CA for `https://` endpoints.

use meta_client::wire::{Compare, CompareOp, CompareTarget, TxnOp, TxnRequest};
use meta_client::{ClientBuilder, ClientError, Consistency, Precondition};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoints: Vec<String> = std::env::args().skip(1).collect();
    let token = match std::env::var("META_TOKEN") {
        Ok(token) => token,
        Err(_) => std::fs::read_to_string("meta-data/root.token")?
            .trim()
            .to_string(),
    };
    let mut builder = ClientBuilder::new(endpoints).token(token);
    if let Ok(ca) = std::env::var("META_CA") {
        builder = builder.ca(ca);
    }
    let client = builder.build()?;

    // A write answers the store's new revision: the key's mod_revision.
    let put = client.put("demo/limit", b"10").await?;
    let kv = client.get("demo/limit").await?.expect("just written");
    println!(
        "demo/limit = {} (mod_revision {}, version {})",
        kv.value.value.as_deref().unwrap_or("<binary>"),
        kv.mod_revision,
        kv.version
    );
    assert_eq!(kv.mod_revision, put.revision);

    // Read-modify-write without lost updates: the write names the revision
    // it read; if someone wrote in between, it fails and changes nothing.
    client
        .put_if(
            "demo/limit",
            b"20",
            Precondition::ModRevision(kv.mod_revision),
        )
        .await?;
    match client
        .put_if(
            "demo/limit",
            b"30",
            Precondition::ModRevision(kv.mod_revision),
        )
        .await
    {
        Err(e) if e.is_precondition_failed() => println!("stale write refused: {e}"),
        other => return Err(format!("expected a refusal, got {other:?}").into()),
    }

    // A transaction: take a lock only if nobody holds it, atomically.
    let take = TxnRequest {
        compare: vec![Compare::new(
            "demo/lock",
            CompareOp::Equal,
            CompareTarget::Exists(false),
        )],
        success: vec![TxnOp::put("demo/lock", b"me")],
        failure: vec![TxnOp::get("demo/lock")],
    };
    let first = client.txn(&take).await?;
    let second = client.txn(&take).await?;
    println!(
        "lock taken: {}, taken again: {}",
        first.succeeded, second.succeeded
    );

    // Binary values are bytes in, bytes out.
    client.put("demo/blob", [0u8, 0xff, 0x10]).await?;
    let raw = client.get_raw("demo/blob", Consistency::Stale).await?;
    println!("demo/blob = {:?}", raw.unwrap_or_default());

    // Lists page by themselves; a range delete is one revision.
    let listed = client
        .list_all("demo/", 1000, Consistency::Linearizable)
        .await?;
    let keys: Vec<&str> = listed.items.iter().map(|kv| kv.key.as_str()).collect();
    println!("demo/ holds {keys:?} at revision {}", listed.revision);
    let gone = client.delete_prefix("demo/").await?;
    println!("deleted {} keys", gone.deleted.unwrap_or(0));

    // Errors say what happened: transport, the API's code, or an unknown
    // outcome (a write that may still commit: read before retrying).
    if let Err(e @ ClientError::OutcomeUnknown { .. }) = client.put("demo/x", b"1").await {
        println!("unknown outcome: {e}");
    }
    client.delete("demo/x").await?;
    Ok(())
}
