//! The state machine's business rules: every rejection is a deterministic
//! result, identical on every engine, and nothing is written for it.

use std::collections::BTreeMap;

use meta_raft::MAX_COMMAND_LEN;
use meta_raft::model::{ApiKeyId, ApiKeyRecord, ClusterNode, NodeState, ShardAssignment};
use meta_raft::types::Entry;
use meta_raft::{ApiKeyCheck, ApiKeySecret, Command, Envelope, Rejection, Response, StateMachine};
use meta_testkit::router::content_hash;
use meta_testkit::{Engine, OpenForTests};
use openraft::EntryPayload;
use openraft::storage::RaftStateMachine;
use openraft::testing::log_id;

fn node(id: u64) -> Command {
    Command::UpsertNode(ClusterNode {
        id,
        address: format!("10.0.0.{id}:7000"),
        state: NodeState::Active,
        labels: BTreeMap::from([("zone".to_string(), format!("z{}", id % 2))]),
    })
}

fn shards(expected_version: u64, replicas: &[u64]) -> Command {
    Command::SetShardMap {
        expected_version,
        shards: BTreeMap::from([(
            7,
            ShardAssignment {
                replicas: replicas.to_vec(),
            },
        )]),
    }
}

fn api_key(id: &str, secret: &ApiKeySecret) -> Command {
    Command::CreateApiKey(ApiKeyRecord {
        id: ApiKeyId(id.into()),
        name: "ci".into(),
        scopes: vec!["read".into()],
        created_at_ms: 1_000,
        expires_at_ms: Some(10_000),
        revoked_at_ms: None,
        secret_hash: secret.hash(),
    })
}

/// Applies `payloads` as entries 1.. and returns the responses.
async fn apply(
    sm: &mut StateMachine,
    first: u64,
    payloads: Vec<EntryPayload<meta_raft::types::TypeConfig>>,
) -> Vec<Response> {
    let entries: Vec<Entry> = payloads
        .into_iter()
        .enumerate()
        .map(|(i, payload)| Entry {
            log_id: log_id(1, 1, first + i as u64),
            payload,
        })
        .collect();
    sm.apply(entries).await.expect("apply")
}

fn commands(list: Vec<Command>) -> Vec<EntryPayload<meta_raft::types::TypeConfig>> {
    list.iter()
        .map(|c| EntryPayload::Normal(Envelope::new(c)))
        .collect()
}

/// The scenario: valid commands interleaved with every kind of rejection.
fn scenario(secret: &ApiKeySecret) -> Vec<EntryPayload<meta_raft::types::TypeConfig>> {
    let mut payloads = commands(vec![
        node(1),
        node(2),
        shards(0, &[1, 2]),
        shards(0, &[1]),
        shards(1, &[1, 9]),
        Command::RemoveNode { id: 2 },
        Command::RemoveNode { id: 5 },
        api_key("k1", secret),
        api_key("k1", secret),
        Command::RevokeApiKey {
            id: ApiKeyId("nope".into()),
            at_ms: 5,
        },
        Command::CompareAndSwap {
            key: b"a".to_vec(),
            expected: None,
            new: Some(b"1".to_vec()),
        },
        Command::CompareAndSwap {
            key: b"a".to_vec(),
            expected: None,
            new: Some(b"2".to_vec()),
        },
        Command::CompareAndSwap {
            key: b"a".to_vec(),
            expected: Some(b"1".to_vec()),
            new: None,
        },
        Command::Put {
            key: vec![b'x'; 600],
            value: b"v".to_vec(),
        },
        Command::Put {
            key: b"big".to_vec(),
            value: vec![0; MAX_COMMAND_LEN + 1],
        },
        Command::SetConfig {
            name: "max-shards".into(),
            value: "64".into(),
        },
        Command::Put {
            key: b"b".to_vec(),
            value: b"kept".to_vec(),
        },
    ]);
    payloads.push(EntryPayload::Normal(Envelope {
        version: 99,
        command: vec![1, 2, 3],
    }));
    payloads.push(EntryPayload::Normal(Envelope {
        version: Envelope::VERSION,
        command: vec![0xFF; 3],
    }));
    payloads.push(EntryPayload::Blank);
    payloads
}

/// The responses to the first 13 commands of the scenario.
fn expected() -> Vec<Response> {
    use Rejection::*;
    use Response::{Applied, Rejected, ShardMapVersion};
    // Each applied command that changes something is the next revision
    // (the shard map's is 3); a rejected one takes none.
    vec![
        Applied { revision: 1 },
        Applied { revision: 2 },
        ShardMapVersion(1),
        Rejected(StaleShardMapVersion {
            expected: 0,
            current: 1,
        }),
        Rejected(UnknownNode { id: 9 }),
        Rejected(NodeInUse { id: 2, shard: 7 }),
        Rejected(UnknownNode { id: 5 }),
        Applied { revision: 4 },
        Rejected(DuplicateApiKey {
            id: ApiKeyId("k1".into()),
        }),
        Rejected(UnknownApiKey {
            id: ApiKeyId("nope".into()),
        }),
        Applied { revision: 5 },
        Rejected(CasMismatch {
            current: Some(b"1".to_vec()),
        }),
        Applied { revision: 6 },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_are_deterministic_results_identical_on_every_engine() {
    let secret = ApiKeySecret::generate().unwrap();
    let mut hashes = Vec::new();
    let mut all_responses = Vec::new();
    for engine in Engine::ALL {
        let dir = tempfile::tempdir().unwrap();
        let store = engine.store(dir.path());
        let mut sm = StateMachine::open(store.clone()).await.unwrap();
        let responses = apply(&mut sm, 1, scenario(&secret)).await;
        assert_eq!(responses[..13], expected()[..], "{engine:?}");
        // Key and value limits: rejected by kind (the messages name the limit).
        assert!(
            matches!(
                responses[13],
                Response::Rejected(Rejection::InvalidKey { .. })
            ),
            "{:?}",
            responses[13]
        );
        assert!(matches!(
            responses[14],
            Response::Rejected(Rejection::ValueTooLarge { .. })
        ));
        assert_eq!(
            responses[15..17],
            [
                Response::Applied { revision: 7 },
                Response::Applied { revision: 8 }
            ]
        );
        assert_eq!(
            responses[17],
            Response::Rejected(Rejection::UnsupportedEnvelope { version: 99 })
        );
        assert!(matches!(
            responses[18],
            Response::Rejected(Rejection::Malformed { .. })
        ));
        assert_eq!(responses[19], Response::Internal);
        let reader = sm.reader();
        assert_eq!(reader.shard_map().version, 1);
        assert_eq!(reader.cluster_map().len(), 2);
        assert_eq!(reader.get(b"a"), None);
        assert_eq!(reader.get(b"b").as_deref(), Some(&b"kept"[..]));
        assert_eq!(reader.config("max-shards").as_deref(), Some("64"));
        assert_eq!(sm.applied().last_applied, Some(log_id(1, 1, 20)));
        sm.flush().unwrap();
        hashes.push(content_hash(&*store));
        all_responses.push(responses);
    }
    assert!(
        hashes.windows(2).all(|w| w[0] == w[1]),
        "engines diverged: {hashes:?}"
    );
    assert!(all_responses.windows(2).all(|w| w[0] == w[1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_verify_in_constant_time_and_honour_revocation_and_expiry() {
    let store = Engine::Mem.store(std::path::Path::new(""));
    let mut sm = StateMachine::open(store).await.unwrap();
    let secret = ApiKeySecret::generate().unwrap();
    apply(&mut sm, 1, commands(vec![api_key("k1", &secret)])).await;
    let reader = sm.reader();
    let id = ApiKeyId("k1".into());
    assert_eq!(
        reader.verify_api_key(&id, &secret, 2_000),
        ApiKeyCheck::Valid
    );
    assert_eq!(
        reader.verify_api_key(&id, &ApiKeySecret::from_presented("wrong"), 2_000),
        ApiKeyCheck::Invalid
    );
    assert_eq!(
        reader.verify_api_key(&ApiKeyId("k2".into()), &secret, 2_000),
        ApiKeyCheck::Invalid
    );
    assert_eq!(
        reader.verify_api_key(&id, &secret, 10_000),
        ApiKeyCheck::Expired
    );
    apply(
        &mut sm,
        2,
        commands(vec![Command::RevokeApiKey {
            id: id.clone(),
            at_ms: 3_000,
        }]),
    )
    .await;
    assert_eq!(
        reader.verify_api_key(&id, &secret, 4_000),
        ApiKeyCheck::Revoked
    );
    let listed = reader.api_keys();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].revoked_at_ms, Some(3_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_space_alarm_refuses_new_data_on_every_engine_keeps_deletes_and_survives_reopen() {
    use meta_raft::{Alarm, AlarmKind};
    let alarm = |kind, node| {
        Command::RaiseAlarm(Alarm {
            kind,
            node,
            raised_at_ms: 5,
            detail: "test".into(),
        })
    };
    let put = |k: &str| Command::Put {
        key: k.as_bytes().to_vec(),
        value: b"v".to_vec(),
    };
    let mut hashes = Vec::new();
    for engine in Engine::ALL {
        let dir = tempfile::tempdir().unwrap();
        let store = engine.store(dir.path());
        let mut sm = StateMachine::open(store.clone()).await.unwrap();
        let responses = apply(
            &mut sm,
            1,
            commands(vec![
                put("a"),
                node(1),
                alarm(AlarmKind::Quota, 1),
                alarm(AlarmKind::Disk, 2),
                put("c"),
                Command::CompareAndSwap {
                    key: b"a".to_vec(),
                    expected: Some(b"v".to_vec()),
                    new: Some(b"w".to_vec()),
                },
                Command::CompareAndSwap {
                    key: b"a".to_vec(),
                    expected: Some(b"v".to_vec()),
                    new: None,
                },
                Command::Delete { key: b"a".to_vec() },
                node(3),
                Command::UpsertNode(ClusterNode {
                    id: 1,
                    address: "10.0.0.1:7000".into(),
                    state: NodeState::Down,
                    labels: BTreeMap::from([("zone".to_string(), "z1".to_string())]),
                }),
                alarm(AlarmKind::Disk, 9),
                Command::RaiseAlarm(Alarm {
                    kind: AlarmKind::Disk,
                    node: 9,
                    raised_at_ms: 5,
                    detail: "x".repeat(meta_raft::MAX_ALARM_DETAIL + 1),
                }),
                Command::ClearAlarm {
                    kind: None,
                    node: Some(9),
                },
                Command::ClearAlarm {
                    kind: Some(AlarmKind::Quota),
                    node: None,
                },
                put("d"),
            ]),
        )
        .await;
        let no_space = |r: &Response| matches!(r, Response::Rejected(Rejection::NoSpace { .. }));
        assert!(
            responses[..4].iter().all(Response::is_applied),
            "{engine:?}: {responses:?}"
        );
        assert!(
            no_space(&responses[4]) && no_space(&responses[5]),
            "{responses:?}"
        );
        assert!(
            responses[6].is_applied(),
            "a delete by compare-and-swap goes on"
        );
        assert!(responses[7].is_applied(), "a delete goes on");
        assert!(no_space(&responses[8]), "a new node adds data");
        assert!(responses[9].is_applied(), "marking a node down does not");
        assert!(responses[10].is_applied());
        assert!(
            matches!(
                responses[11],
                Response::Rejected(Rejection::Malformed { .. })
            ),
            "an oversized detail: {:?}",
            responses[11]
        );
        assert!(responses[12..14].iter().all(Response::is_applied));
        assert!(
            no_space(&responses[14]),
            "the disk alarm is still raised: {responses:?}"
        );
        let reader = sm.reader();
        assert_eq!(reader.alarms().len(), 1);
        assert_eq!(reader.alarms()[0].kind, AlarmKind::Disk);
        assert_eq!((reader.get(b"a"), reader.get(b"c")), (None, None));
        assert_eq!(reader.node(1).unwrap().state, NodeState::Down);
        sm.flush().unwrap();
        hashes.push(content_hash(&*store));
        sm.flush().unwrap();
        drop(sm);
        // Reopened: the alarm is still raised.
        let mut sm = StateMachine::open(store.clone()).await.unwrap();
        assert_eq!(sm.reader().alarms().len(), 1);
        let responses = apply(
            &mut sm,
            16,
            commands(vec![
                Command::ClearAlarm {
                    kind: None,
                    node: Some(2),
                },
                put("e"),
            ]),
        )
        .await;
        assert!(responses.iter().all(Response::is_applied), "{responses:?}");
        assert!(sm.reader().alarms().is_empty());
    }
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "{hashes:?}");
}
