//! What the database labs' clients record: one line `ID SENT_MS ACKED_MS` per commit
//! acknowledged to them, and the two things read from it: which acknowledged commits a
//! database lost, and how long a fault held writes up.

use std::collections::BTreeSet;
use std::path::Path;

/// One acknowledged commit: the row id, when the client sent it and when the commit was
/// acknowledged (Unix milliseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    pub id: i64,
    pub sent_ms: u64,
    pub acked_ms: u64,
}

/// The acknowledged commits a client recorded in `file`.
pub fn read_acks(file: &Path) -> Vec<Ack> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace().map(str::parse::<u64>);
            Some(Ack {
                id: f.next()?.ok()? as i64,
                sent_ms: f.next()?.ok()?,
                acked_ms: f.next()?.ok()?,
            })
        })
        .collect()
}

/// The ids of `acks` absent from `rows` (one row id per line, as a SQL client prints them).
pub fn missing_acks(acks: &[Ack], rows: &str) -> Vec<i64> {
    let rows: BTreeSet<i64> = rows.lines().filter_map(|l| l.trim().parse().ok()).collect();
    acks.iter()
        .map(|a| a.id)
        .filter(|i| !rows.contains(i))
        .collect()
}

/// The longest time without an acknowledgement after `from_ms` (a fault), with when it
/// ended: the wait from `from_ms` (or from the last acknowledgement after it) to the next
/// acknowledgement. `None` while no commit was acknowledged after `from_ms`.
pub fn write_pause(acks: &[Ack], from_ms: u64) -> Option<WritePause> {
    let mut last = from_ms;
    let mut longest: Option<WritePause> = None;
    for a in acks.iter().filter(|a| a.acked_ms >= from_ms) {
        let pause = WritePause {
            ms: a.acked_ms - last.min(a.acked_ms),
            ended_ms: a.acked_ms,
        };
        if longest.is_none_or(|l| pause.ms > l.ms) {
            longest = Some(pause);
        }
        last = last.max(a.acked_ms);
    }
    longest
}

/// A time writes were held up: its length and when it ended (Unix milliseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WritePause {
    pub ms: u64,
    pub ended_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(id: i64, acked_ms: u64) -> Ack {
        Ack {
            id,
            sent_ms: acked_ms.saturating_sub(5),
            acked_ms,
        }
    }

    #[test]
    fn the_pause_is_the_longest_wait_counted_from_the_fault() {
        let acks = [
            ack(1, 90),
            ack(2, 100),
            ack(3, 400),
            ack(4, 410),
            ack(5, 2_000),
        ];
        // From 120: 120 -> 400 is 280, 410 -> 2,000 is 1,590.
        assert_eq!(
            write_pause(&acks, 120),
            Some(WritePause {
                ms: 1_590,
                ended_ms: 2_000
            })
        );
        // From 1,950 the only wait is 50 ms.
        assert_eq!(
            write_pause(&acks, 1_950),
            Some(WritePause {
                ms: 50,
                ended_ms: 2_000
            })
        );
        assert_eq!(write_pause(&acks, 2_001), None);
    }

    #[test]
    fn a_missing_row_is_reported() {
        let acks = [ack(1, 1), ack(2, 2), ack(3, 3)];
        assert_eq!(missing_acks(&acks, "1\n3\n"), [2]);
        assert!(missing_acks(&acks, "3\n2\n1\n").is_empty());
        assert_eq!(read_acks(Path::new("/nonexistent/acks")), []);
    }
}
