//! Rule S1 judged from the instances themselves: every copy appends `instance epoch host
//! unix_millis` lines to a shared file while it runs (`buoy demo-app --heartbeats FILE`, every
//! 10 ms by default, so a copy's span is known to 10 ms). A copy is one (instance, epoch, host):
//! two copies of one single instance whose spans overlap in time ran at once, whether their
//! epochs differ or two hosts ran the same epoch.

use std::collections::BTreeMap;

/// The time span one copy (instance, epoch) was seen running, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    pub instance: String,
    pub epoch: u64,
    pub host: String,
    pub first_ms: u64,
    pub last_ms: u64,
    pub beats: u64,
}

/// Two copies of one instance that ran at the same time.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Overlap {
    pub instance: String,
    pub first: (u64, String),
    pub second: (u64, String),
    /// When both started running (unix ms), and for how long both ran.
    pub since_ms: u64,
    pub overlap_ms: u64,
}

/// Reads heartbeat lines (malformed ones are skipped) into one span per (instance, epoch,
/// host).
pub fn spans(text: &str) -> Vec<Span> {
    let mut by: BTreeMap<(String, u64, String), Span> = BTreeMap::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (Some(instance), Some(epoch), Some(host), Some(at), None) =
            (f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        let (Ok(epoch), Ok(at)) = (epoch.parse::<u64>(), at.parse::<u64>()) else {
            continue;
        };
        let s = by
            .entry((instance.to_string(), epoch, host.to_string()))
            .or_insert_with(|| Span {
                instance: instance.to_string(),
                epoch,
                host: host.to_string(),
                first_ms: at,
                last_ms: at,
                beats: 0,
            });
        s.first_ms = s.first_ms.min(at);
        s.last_ms = s.last_ms.max(at);
        s.beats += 1;
    }
    by.into_values().collect()
}

/// Every pair of copies of one instance whose spans overlap (for single instances: any
/// overlap breaks rule S1).
pub fn overlaps(spans: &[Span]) -> Vec<Overlap> {
    let mut by: BTreeMap<&str, Vec<&Span>> = BTreeMap::new();
    for s in spans {
        by.entry(&s.instance).or_default().push(s);
    }
    let mut out = Vec::new();
    for (instance, copies) in by {
        for (i, a) in copies.iter().enumerate() {
            for b in &copies[i + 1..] {
                let start = a.first_ms.max(b.first_ms);
                let end = a.last_ms.min(b.last_ms);
                if start < end {
                    out.push(Overlap {
                        instance: instance.to_string(),
                        first: (a.epoch, a.host.clone()),
                        second: (b.epoch, b.host.clone()),
                        since_ms: start,
                        overlap_ms: end - start,
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_per_epoch_and_overlaps_between_them() {
        let text = "web 1 h1 1000\nweb 1 h1 1100\nweb 2 h2 1300\nweb 2 h2 1400\n\
                    garbage line\ndb 3 h1 1000\ndb 3 h1 2000\ndb 4 h2 1500\ndb 4 h2 2500\n";
        let s = spans(text);
        assert_eq!(s.len(), 4);
        let web1 = s
            .iter()
            .find(|x| x.instance == "web" && x.epoch == 1)
            .unwrap();
        assert_eq!((web1.first_ms, web1.last_ms, web1.beats), (1000, 1100, 2));
        let o = overlaps(&s);
        assert_eq!(o.len(), 1, "{o:?}");
        assert_eq!(o[0].instance, "db");
        assert_eq!(o[0].overlap_ms, 500);
        assert_eq!((o[0].first.0, o[0].second.0), (3, 4));
    }

    #[test]
    fn two_hosts_running_the_same_epoch_count_as_two_copies() {
        let text = "web 5 h1 1000\nweb 5 h1 1050\nweb 5 h2 1020\nweb 5 h2 1040\n";
        let s = spans(text);
        assert_eq!(s.len(), 2, "{s:?}");
        let o = overlaps(&s);
        assert_eq!(o.len(), 1, "{o:?}");
        assert_eq!(
            (o[0].first.1.as_str(), o[0].second.1.as_str()),
            ("h1", "h2")
        );
        assert_eq!(o[0].overlap_ms, 20);
    }

    #[test]
    fn an_overlap_of_ten_milliseconds_is_seen() {
        // Epoch 1 beats every 10 ms until 1100; epoch 2 starts at 1090.
        let mut text = String::new();
        for t in (1000..=1100).step_by(10) {
            text.push_str(&format!("db 1 h1 {t}\n"));
        }
        for t in (1090..=1200).step_by(10) {
            text.push_str(&format!("db 2 h2 {t}\n"));
        }
        let o = overlaps(&spans(&text));
        assert_eq!(o.len(), 1, "{o:?}");
        assert_eq!(o[0].overlap_ms, 10);
    }
}
