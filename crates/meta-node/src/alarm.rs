//! The space alarm's watchers: every node checks, once a second (ten times a
//! second while its disk has less than twice its watermark free), the data
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

/// How often they look while the disk has less than twice its watermark
/// free: a burst of writes, a memtable flush or a snapshot must not take
/// the disk from above its watermark to full between two looks.
pub const CHECK_NEAR_WATERMARK: Duration = Duration::from_millis(100);

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
    /// Clear the disk alarm of a node that is no longer a member.
    ClearDiskOf(u64),
}

/// Decides what to change, from what was measured: `used` bytes of data
/// (judged only by the leader), `free` bytes on this node's disk, and the
/// cluster's `members` (a leader clears the disk alarms of nodes that left).
#[allow(clippy::too_many_arguments)]
pub fn decide(
    node_id: u64,
    leading: bool,
    alarms: &[Alarm],
    members: &[u64],
    used: u64,
    free: Option<u64>,
    quota_bytes: u64,
    min_free_disk_bytes: u64,
) -> Vec<Change> {
    let mut changes = Vec::new();
    if leading {
        for gone in alarms
            .iter()
            .filter(|a| a.kind == AlarmKind::Disk && !members.contains(&a.node))
        {
            changes.push(Change::ClearDiskOf(gone.node));
        }
    }
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

/// Whether `free` bytes are less than twice the `watermark` (0: none).
fn near_watermark(free: u64, watermark: u64) -> bool {
    watermark > 0 && free < watermark.saturating_mul(2)
}

impl Watch {
    /// Checks forever (until the task is aborted).
    pub async fn run(self) {
        let mut last_error = String::new();
        let mut next = CHECK_EVERY;
        loop {
            tokio::time::sleep(next).await;
            next = CHECK_EVERY;
            match self.check().await {
                // Said once, not every second.
                Err(e) if e != last_error => {
                    tracing::warn!("space alarm: {e}");
                    last_error = e;
                }
                Err(_) => {}
                Ok(free) => {
                    last_error.clear();
                    if free.is_some_and(|free| near_watermark(free, self.min_free_disk_bytes)) {
                        next = CHECK_NEAR_WATERMARK;
                    }
                }
            }
        }
    }

    /// One look; the disk's free bytes, if it was measured (not without a
    /// leader).
    async fn check(&self) -> Result<Option<u64>, String> {
        let m = self.raft.metrics().borrow().clone();
        let Some(leader) = m.current_leader else {
            return Ok(None);
        };
        let leading = leader == self.node_id;
        let alarms = self.reader.alarms();
        let members: Vec<u64> = m
            .membership_config
            .membership()
            .nodes()
            .map(|(id, _)| *id)
            .collect();
        // Walks the small maps (config, cluster, keys; the user keys'
        // size is kept as they change): off the async workers.
        let used = if leading {
            let reader = self.reader.clone();
            tokio::task::spawn_blocking(move || reader.data_bytes())
                .await
                .map_err(|e| format!("measuring the data: {e}"))?
        } else {
            0
        };
        let data_dir = self.data_dir.clone();
        let free =
            tokio::task::spawn_blocking(move || meta_store_api::disk::available_bytes(&data_dir))
                .await
                .map_err(|e| format!("measuring the disk: {e}"))?;
        let changes = decide(
            self.node_id,
            leading,
            &alarms,
            &members,
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
                Change::ClearDiskOf(node) => tracing::info!(
                    "clearing the disk alarm of node {node}: it is no longer a member"
                ),
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
                    Change::ClearDiskOf(node) => Command::ClearAlarm {
                        kind: Some(AlarmKind::Disk),
                        node: Some(node),
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
                    Change::ClearQuota | Change::ClearDiskOf(_) => continue,
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
        Ok(free)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_disk_is_looked_at_more_often_under_twice_its_watermark() {
        assert!(near_watermark(7 << 20, 4 << 20));
        assert!(near_watermark(0, 4 << 20));
        assert!(!near_watermark(8 << 20, 4 << 20));
        assert!(!near_watermark(0, 0), "no watermark, no hurry");
        assert!(near_watermark(u64::MAX - 1, u64::MAX), "no overflow");
    }

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
            &decide(1, true, &[], &[1, 2, 3], 101, Some(1000), 100, 10),
            AlarmKind::Quota
        ));
        assert!(decide(2, false, &[], &[1, 2, 3], 101, Some(1000), 100, 10).is_empty());
        // Cleared under 90%, not at 95%.
        let quota = [alarm(AlarmKind::Quota, 1)];
        assert!(decide(1, true, &quota, &[1, 2, 3], 95, Some(1000), 100, 10).is_empty());
        assert_eq!(
            decide(3, true, &quota, &[1, 2, 3], 90, Some(1000), 100, 10),
            vec![Change::ClearQuota]
        );
        // A disk under its watermark, on any node; cleared 10% above it.
        assert!(raise(
            &decide(2, false, &[], &[1, 2, 3], 0, Some(9), 100, 10),
            AlarmKind::Disk
        ));
        let disk = [alarm(AlarmKind::Disk, 2)];
        assert!(decide(2, false, &disk, &[1, 2, 3], 0, Some(10), 100, 10).is_empty());
        assert_eq!(
            decide(2, false, &disk, &[1, 2, 3], 0, Some(11), 100, 10),
            vec![Change::ClearDisk]
        );
        // Another node's disk alarm is not this node's to clear, unless
        // that node left the cluster.
        assert!(decide(3, true, &disk, &[1, 2, 3], 0, Some(1000), 100, 10).is_empty());
        assert_eq!(
            decide(3, true, &disk, &[1, 3], 0, Some(1000), 100, 10),
            vec![Change::ClearDiskOf(2)]
        );
    }
}
