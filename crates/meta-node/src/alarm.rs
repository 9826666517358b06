//! The space alarm's watchers: every node checks, once a second, the data
//! against the quota (the leader acts on it) and its own disk against the
//! free-space watermark, and raises or clears the replicated alarm.
//!
//! While an alarm is raised, every replica's state machine rejects the
//! commands that add data ([`meta_raft::Rejection::NoSpace`], HTTP `507
//! quota_exceeded`); deletes, revocations and membership changes go on, so
//! an operator can make room. A quota alarm clears once the data is under
//! 90% of the quota; a disk alarm once its node has 10% more free space
//! than its watermark; `DELETE /v1/cluster/alarms` clears them all at once
//! (they come back at the next check if the cause is still there).

use std::path::PathBuf;
use std::time::Duration;

use meta_raft::types::Raft;
use meta_raft::{Alarm, AlarmKind, Command, MetadataReader, Proposer};

use crate::transport::TcpNetwork;

/// How often the watchers look.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// What the watchers need.
pub struct Watch {
    /// This node.
    pub node_id: u64,
    /// Its Raft.
    pub raft: Raft,
    /// Its proposer (when it leads).
    pub proposer: Proposer,
    /// Its views.
    pub reader: MetadataReader,
    /// Its network (to tell the leader of its disk).
    pub network: TcpNetwork,
    /// Its data directory (whose filesystem is watched).
    pub data_dir: PathBuf,
    /// `limits.quota_bytes`.
    pub quota_bytes: u64,
    /// `limits.min_free_disk_bytes`.
    pub min_free_disk_bytes: u64,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What a check decided to change.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    /// Raise this alarm.
    Raise(Alarm),
    /// Clear the quota alarm.
    ClearQuota,
    /// Clear this node's disk alarm.
    ClearDisk,
}

/// Decides what to change, from what was measured: `used` bytes of data
/// (judged only by the leader), `free` bytes on this node's disk.
pub fn decide(
    node_id: u64,
    leading: bool,
    alarms: &[Alarm],
    used: u64,
    free: Option<u64>,
    quota_bytes: u64,
    min_free_disk_bytes: u64,
) -> Vec<Change> {
    let mut changes = Vec::new();
    let quota_raised = alarms.iter().any(|a| a.kind == AlarmKind::Quota);
    if leading && !quota_raised && used > quota_bytes {
        changes.push(Change::Raise(Alarm {
            kind: AlarmKind::Quota,
            node: node_id,
            raised_at_ms: now_ms(),
            detail: format!("the data is {used} bytes, over limits.quota_bytes ({quota_bytes})"),
        }));
    }
    if leading && quota_raised && used <= quota_bytes / 10 * 9 {
        changes.push(Change::ClearQuota);
    }
    let disk_raised = alarms
        .iter()
        .any(|a| a.kind == AlarmKind::Disk && a.node == node_id);
    if let Some(free) = free {
        if !disk_raised && free < min_free_disk_bytes {
            changes.push(Change::Raise(Alarm {
                kind: AlarmKind::Disk,
                node: node_id,
                raised_at_ms: now_ms(),
                detail: format!(
                    "node {node_id} has {free} bytes of disk free, under \
                     limits.min_free_disk_bytes ({min_free_disk_bytes})"
                ),
            }));
        }
        if disk_raised && free >= min_free_disk_bytes.saturating_add(min_free_disk_bytes / 10) {
            changes.push(Change::ClearDisk);
        }
    }
    changes
}

impl Watch {
    /// Checks forever (until the task is aborted).
    pub async fn run(self) {
        let mut last_error = String::new();
        loop {
            tokio::time::sleep(CHECK_EVERY).await;
            if let Err(e) = self.check().await {
                // Said once, not every second.
                if e != last_error {
                    tracing::warn!("space alarm: {e}");
                    last_error = e;
                }
            } else {
                last_error.clear();
            }
        }
    }

    async fn check(&self) -> Result<(), String> {
        let m = self.raft.metrics().borrow().clone();
        let Some(leader) = m.current_leader else {
            return Ok(());
        };
        let leading = leader == self.node_id;
        let alarms = self.reader.alarms();
        let used = if leading { self.reader.data_bytes() } else { 0 };
        let free = meta_store_api::disk::available_bytes(&self.data_dir);
        let changes = decide(
            self.node_id,
            leading,
            &alarms,
            used,
            free,
            self.quota_bytes,
            self.min_free_disk_bytes,
        );
        for change in changes {
            match &change {
                Change::Raise(alarm) => tracing::warn!("raising the space alarm: {}", alarm.detail),
                Change::ClearQuota => tracing::info!(
                    "clearing the quota alarm: the data is back under 90% of limits.quota_bytes"
                ),
                Change::ClearDisk => {
                    tracing::info!("clearing this node's disk alarm: its disk has room again")
                }
            }
            if leading {
                let command = match change {
                    Change::Raise(alarm) => Command::RaiseAlarm(alarm),
                    Change::ClearQuota => Command::ClearAlarm {
                        kind: Some(AlarmKind::Quota),
                        node: None,
                    },
                    Change::ClearDisk => Command::ClearAlarm {
                        kind: Some(AlarmKind::Disk),
                        node: Some(self.node_id),
                    },
                };
                self.proposer
                    .propose(command)
                    .await
                    .map_err(|e| format!("proposing: {e}"))?;
            } else {
                let raise = match change {
                    Change::Raise(alarm) => Some(alarm),
                    Change::ClearDisk => None,
                    Change::ClearQuota => continue,
                };
                let leader_addr = m
                    .membership_config
                    .membership()
                    .get_node(&leader)
                    .cloned()
                    .ok_or_else(|| format!("the leader, node {leader}, is not a member"))?;
                self.network
                    .report_disk_alarm(leader, &leader_addr, self.node_id, raise)
                    .await
                    .map_err(|e| format!("telling the leader (node {leader}): {e}"))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alarm(kind: AlarmKind, node: u64) -> Alarm {
        Alarm {
            kind,
            node,
            raised_at_ms: 0,
            detail: String::new(),
        }
    }

    #[test]
    fn the_quota_is_the_leaders_and_both_alarms_clear_with_a_margin() {
        let raise = |c: &[Change], kind| {
            c.iter()
                .any(|c| matches!(c, Change::Raise(a) if a.kind == kind))
        };
        // Over the quota: only a leader raises it.
        assert!(raise(
            &decide(1, true, &[], 101, Some(1000), 100, 10),
            AlarmKind::Quota
        ));
        assert!(decide(2, false, &[], 101, Some(1000), 100, 10).is_empty());
        // Cleared under 90%, not at 95%.
        let quota = [alarm(AlarmKind::Quota, 1)];
        assert!(decide(1, true, &quota, 95, Some(1000), 100, 10).is_empty());
        assert_eq!(
            decide(3, true, &quota, 90, Some(1000), 100, 10),
            vec![Change::ClearQuota]
        );
        // A disk under its watermark, on any node; cleared 10% above it.
        assert!(raise(
            &decide(2, false, &[], 0, Some(9), 100, 10),
            AlarmKind::Disk
        ));
        let disk = [alarm(AlarmKind::Disk, 2)];
        assert!(decide(2, false, &disk, 0, Some(10), 100, 10).is_empty());
        assert_eq!(
            decide(2, false, &disk, 0, Some(11), 100, 10),
            vec![Change::ClearDisk]
        );
        // Another node's disk alarm is not this node's to clear.
        assert!(decide(3, true, &disk, 0, Some(1000), 100, 10).is_empty());
    }
}
