//! A linearizability checker for one register (one key) with reads,
//! writes and compare-and-swap, after Wing & Gong with Lowe's memoisation
//! (the algorithm Porcupine and Knossos use). Linearizability is local, so
//! a key-value history is checked one key at a time.
//!
//! An operation whose outcome is unknown (timed out, connection lost) may
//! take effect at any point after its invocation, or never: it has no
//! return event, and the search succeeds once only such operations are
//! left. Reads with unknown outcome carry no information and are dropped
//! by the recorder.

use std::collections::HashSet;

/// A register value: `None` is "absent"; values are ids unique per write.
pub type Value = Option<u64>;

/// What an operation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A read that returned this value.
    Read(Value),
    /// A write (a delete writes `None`).
    Write(Value),
    /// Compare-and-swap: `expected` -> `new`; `swapped` is its result, or
    /// `None` when the outcome is unknown.
    Cas {
        /// The value it swaps out.
        expected: Value,
        /// The value it swaps in.
        new: Value,
        /// Whether it swapped (`None`: unknown outcome).
        swapped: Option<bool>,
    },
}

/// One operation: invoked at `call`, answered at `ret` (`None`: unknown
/// outcome). Times are any monotonic clock readings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Op {
    /// When it was invoked.
    pub call: u64,
    /// When it returned (`None`: unknown outcome).
    pub ret: Option<u64>,
    /// What it did.
    pub kind: Kind,
}

/// The register's next state if `kind` can take effect in `state`.
fn step(state: Value, kind: Kind) -> Option<Value> {
    match kind {
        Kind::Read(v) => (v == state).then_some(state),
        Kind::Write(v) => Some(v),
        Kind::Cas {
            expected,
            new,
            swapped: Some(true),
        } => (state == expected).then_some(new),
        Kind::Cas {
            expected,
            swapped: Some(false),
            ..
        } => (state != expected).then_some(state),
        // Unknown: if it took effect, it swapped exactly when it matched.
        Kind::Cas {
            expected,
            new,
            swapped: None,
        } => Some(if state == expected { new } else { state }),
    }
}

/// Why a history is not linearizable, or that the search gave up.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Some order explains every answer.
    Linearizable,
    /// No order does.
    NotLinearizable,
    /// The search exceeded its step budget (report, do not pass).
    GaveUp,
}

const NIL: usize = usize::MAX;

/// A history being recorded by concurrent clients: operations by key.
pub type History = std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<u64, Vec<Op>>>>;

/// Records `op` on `key`.
pub fn record(history: &History, key: u64, op: Op) {
    history
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .entry(key)
        .or_default()
        .push(op);
}

/// How many operations of a history (by key) completed, and how many
/// have an unknown outcome.
pub fn counts(history: &std::collections::BTreeMap<u64, Vec<Op>>) -> (usize, usize) {
    let all: usize = history.values().map(Vec::len).sum();
    let completed = history
        .values()
        .flatten()
        .filter(|o| o.ret.is_some())
        .count();
    (completed, all - completed)
}

/// Checks every key's history from an absent initial value (linearizability
/// is local); panics naming the first key that is not linearizable, how to
/// `replay` the run, and the key's last operations.
pub fn assert_linearizable(
    history: &std::collections::BTreeMap<u64, Vec<Op>>,
    budget: u64,
    replay: &str,
) {
    for (k, ops) in history {
        let verdict = check(ops, None, budget);
        assert_eq!(
            verdict,
            Verdict::Linearizable,
            "key {k}'s history ({} operations, {} unknown) is not linearizable ({replay}; \
             GaveUp: the search budget ran out); its last operations: {:?}",
            ops.len(),
            ops.iter().filter(|o| o.ret.is_none()).count(),
            &ops[ops.len().saturating_sub(20)..]
        );
    }
}

/// Checks `ops` on a register starting at `initial`, spending at most
/// `budget` search steps.
pub fn check(ops: &[Op], initial: Value, budget: u64) -> Verdict {
    // Events: (time, is_return, op). Calls sort before returns at equal
    // times, which only ever allows more orders.
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
    for (i, op) in ops.iter().enumerate() {
        events.push((op.call, false, i));
        if let Some(ret) = op.ret {
            events.push((ret, true, i));
        }
    }
    events.sort_unstable();
    let n = events.len();
    // A doubly linked list over the events, with a head sentinel at `n`.
    let mut next = vec![NIL; n + 1];
    let mut prev = vec![NIL; n + 1];
    let mut call_at = vec![NIL; ops.len()];
    let mut ret_at = vec![NIL; ops.len()];
    let mut last = n;
    for (e, &(_, is_return, op)) in events.iter().enumerate() {
        next[last] = e;
        prev[e] = last;
        last = e;
        if is_return {
            ret_at[op] = e;
        } else {
            call_at[op] = e;
        }
    }
    let unlink = |e: usize, next: &mut Vec<usize>, prev: &mut Vec<usize>| {
        let (p, q) = (prev[e], next[e]);
        next[p] = q;
        if q != NIL {
            prev[q] = p;
        }
    };
    let relink = |e: usize, next: &mut Vec<usize>, prev: &mut Vec<usize>| {
        let (p, q) = (prev[e], next[e]);
        next[p] = e;
        if q != NIL {
            prev[q] = e;
        }
    };
    let mut returns_left = ops.iter().filter(|o| o.ret.is_some()).count();
    let mut linearized = vec![0u64; ops.len().div_ceil(64)];
    let mut seen: HashSet<(Vec<u64>, Value)> = HashSet::new();
    let mut stack: Vec<(usize, Value)> = Vec::new();
    let mut state = initial;
    let mut cur = next[n];
    let mut steps = 0u64;
    while returns_left > 0 {
        steps += 1;
        if steps > budget {
            return Verdict::GaveUp;
        }
        let (_, is_return, op) = events[cur];
        if !is_return {
            if let Some(new_state) = step(state, ops[op].kind) {
                let mut with = linearized.clone();
                with[op / 64] |= 1 << (op % 64);
                if seen.insert((with.clone(), new_state)) {
                    stack.push((op, state));
                    state = new_state;
                    linearized = with;
                    unlink(call_at[op], &mut next, &mut prev);
                    if ret_at[op] != NIL {
                        unlink(ret_at[op], &mut next, &mut prev);
                        returns_left -= 1;
                    }
                    cur = next[n];
                    continue;
                }
            }
            cur = next[cur];
        } else {
            // `op` returned before it could be placed: undo the last choice.
            let Some((undone, before)) = stack.pop() else {
                return Verdict::NotLinearizable;
            };
            state = before;
            linearized[undone / 64] &= !(1 << (undone % 64));
            if ret_at[undone] != NIL {
                relink(ret_at[undone], &mut next, &mut prev);
                returns_left += 1;
            }
            relink(call_at[undone], &mut next, &mut prev);
            cur = next[call_at[undone]];
        }
    }
    Verdict::Linearizable
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: u64 = 1_000_000;

    fn op(call: u64, ret: u64, kind: Kind) -> Op {
        Op {
            call,
            ret: Some(ret),
            kind,
        }
    }

    fn unknown(call: u64, kind: Kind) -> Op {
        Op {
            call,
            ret: None,
            kind,
        }
    }

    fn cas(expected: Value, new: Value, swapped: Option<bool>) -> Kind {
        Kind::Cas {
            expected,
            new,
            swapped,
        }
    }

    use Kind::{Read, Write};

    #[test]
    fn sequential_histories() {
        let ok = [
            op(0, 1, Write(Some(1))),
            op(2, 3, Read(Some(1))),
            op(4, 5, cas(Some(1), Some(2), Some(true))),
            op(6, 7, cas(Some(1), Some(3), Some(false))),
            op(8, 9, Read(Some(2))),
            op(10, 11, Write(None)),
            op(12, 13, Read(None)),
        ];
        assert_eq!(check(&ok, None, BUDGET), Verdict::Linearizable);
        let stale = [op(0, 1, Write(Some(1))), op(2, 3, Read(None))];
        assert_eq!(check(&stale, None, BUDGET), Verdict::NotLinearizable);
        let lost_cas = [
            op(0, 1, Write(Some(1))),
            op(2, 3, cas(Some(1), Some(2), Some(true))),
            op(4, 5, Read(Some(1))),
        ];
        assert_eq!(check(&lost_cas, None, BUDGET), Verdict::NotLinearizable);
        let wrong_failure = [op(0, 1, cas(None, Some(1), Some(false)))];
        assert_eq!(
            check(&wrong_failure, None, BUDGET),
            Verdict::NotLinearizable
        );
    }

    #[test]
    fn concurrency_allows_either_order_but_not_time_travel() {
        // A read overlapping a write may see either value.
        for seen in [None, Some(1)] {
            let h = [op(0, 10, Write(Some(1))), op(5, 15, Read(seen))];
            assert_eq!(check(&h, None, BUDGET), Verdict::Linearizable);
        }
        // Two overlapping reads may not disagree against the write order:
        // new then old is impossible once the old one started after the
        // new one returned.
        let h = [
            op(0, 100, Write(Some(1))),
            op(1, 10, Read(Some(1))),
            op(20, 30, Read(None)),
        ];
        assert_eq!(check(&h, None, BUDGET), Verdict::NotLinearizable);
        // Both of two concurrent CAS from absent cannot win.
        let h = [
            op(0, 10, cas(None, Some(1), Some(true))),
            op(0, 10, cas(None, Some(2), Some(true))),
        ];
        assert_eq!(check(&h, None, BUDGET), Verdict::NotLinearizable);
        let h = [
            op(0, 10, cas(None, Some(1), Some(true))),
            op(0, 10, cas(None, Some(2), Some(false))),
            op(11, 12, Read(Some(1))),
        ];
        assert_eq!(check(&h, None, BUDGET), Verdict::Linearizable);
    }

    #[test]
    fn unknown_outcomes_may_apply_late_or_never_but_only_once() {
        // Never applied.
        let h = [unknown(0, Write(Some(1))), op(5, 6, Read(None))];
        assert_eq!(check(&h, None, BUDGET), Verdict::Linearizable);
        // Applied long after the client gave up.
        let h = [
            unknown(0, Write(Some(1))),
            op(5, 6, Read(None)),
            op(7, 8, Read(Some(1))),
        ];
        assert_eq!(check(&h, None, BUDGET), Verdict::Linearizable);
        // But not undone again.
        let h = [
            unknown(0, Write(Some(1))),
            op(5, 6, Read(Some(1))),
            op(7, 8, Read(None)),
        ];
        assert_eq!(check(&h, None, BUDGET), Verdict::NotLinearizable);
        // Not before it was invoked.
        let h = [op(0, 1, Read(Some(1))), unknown(5, Write(Some(1)))];
        assert_eq!(check(&h, None, BUDGET), Verdict::NotLinearizable);
        // An unknown CAS that matched swaps; one that did not is a no-op.
        let h = [
            op(0, 1, Write(Some(1))),
            unknown(2, cas(Some(1), Some(2), None)),
            op(5, 6, Read(Some(2))),
        ];
        assert_eq!(check(&h, None, BUDGET), Verdict::Linearizable);
        let h = [
            op(0, 1, Write(Some(3))),
            unknown(2, cas(Some(1), Some(2), None)),
            op(5, 6, Read(Some(2))),
        ];
        assert_eq!(check(&h, None, BUDGET), Verdict::NotLinearizable);
    }

    /// Random histories of a real register under random overlap are
    /// linearizable; changing one read's answer to a value never written
    /// makes them not.
    #[test]
    fn random_real_histories_pass_and_a_forged_read_fails() {
        let mut rng = crate::Rng::new(0x1234_5678_9abc_def1);
        let mut rand = move |n: u64| rng.below(n);
        for round in 0..50 {
            // Operations take effect at distinct instants `at`; each is
            // invoked up to 5 before and answered up to 5 after.
            let mut state: Value = None;
            let mut ops = Vec::new();
            for i in 0..60u64 {
                let at = 10 * (i + 1);
                let kind = match rand(3) {
                    0 => Read(state),
                    1 => {
                        state = Some(round * 1000 + i);
                        Write(state)
                    }
                    _ => {
                        let expected = if rand(2) == 0 { state } else { Some(7) };
                        let swapped = state == expected;
                        let new = Some(round * 1000 + i);
                        if swapped {
                            state = new;
                        }
                        cas(expected, new, Some(swapped))
                    }
                };
                ops.push(op(at - rand(6), at + rand(6), kind));
            }
            assert_eq!(
                check(&ops, None, BUDGET),
                Verdict::Linearizable,
                "round {round}"
            );
            let reads: Vec<usize> = (0..ops.len())
                .filter(|&i| matches!(ops[i].kind, Read(_)))
                .collect();
            if let Some(&i) = reads.first() {
                ops[i].kind = Read(Some(999_999_999));
                assert_eq!(check(&ops, None, BUDGET), Verdict::NotLinearizable);
            }
        }
    }
}
