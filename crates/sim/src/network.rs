//! The simulated network: per-link latency drawn from a distribution, random loss, and
//! partitions that block traffic one way or both.

use std::time::Duration;

use swim::Rng;

/// How links behave.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkConfig {
    /// Each link gets a fixed base latency drawn uniformly from `[latency_min, latency_max]`.
    pub latency_min: Duration,
    pub latency_max: Duration,
    /// Each packet adds an exponentially distributed delay with this mean (queueing jitter).
    pub jitter_mean: Duration,
    /// Probability that a datagram is lost. Streams (TCP) are not lossy, only partitionable.
    pub loss: f64,
}

impl NetworkConfig {
    /// A data-center LAN: 0.1-0.5 ms links, 0.1 ms mean jitter, no loss.
    pub fn lan() -> Self {
        NetworkConfig {
            latency_min: Duration::from_micros(100),
            latency_max: Duration::from_micros(500),
            jitter_mean: Duration::from_micros(100),
            loss: 0.0,
        }
    }
}

/// A set of nodes, as a bitmap over node ids.
#[derive(Clone, Debug)]
struct NodeSet(Vec<bool>);

impl NodeSet {
    fn of(ids: &[usize]) -> Self {
        let mut v = vec![false; ids.iter().copied().max().map_or(0, |m| m + 1)];
        for &i in ids {
            v[i] = true;
        }
        NodeSet(v)
    }

    fn contains(&self, i: usize) -> bool {
        self.0.get(i).copied().unwrap_or(false)
    }
}

/// Traffic from any node of `from` to any node of `to` is dropped.
#[derive(Clone, Debug)]
struct Block {
    from: NodeSet,
    to: NodeSet,
}

/// The link model plus the partitions in force.
#[derive(Clone, Debug)]
pub struct Network {
    pub config: NetworkConfig,
    seed: u64,
    blocks: Vec<Block>,
}

impl Network {
    pub fn new(config: NetworkConfig, seed: u64) -> Self {
        Network {
            config,
            seed,
            blocks: Vec::new(),
        }
    }

    /// Cuts traffic from `a` to `b`, and from `b` to `a` unless `one_way`.
    pub fn partition(&mut self, a: &[usize], b: &[usize], one_way: bool) {
        self.blocks.push(Block {
            from: NodeSet::of(a),
            to: NodeSet::of(b),
        });
        if !one_way {
            self.blocks.push(Block {
                from: NodeSet::of(b),
                to: NodeSet::of(a),
            });
        }
    }

    /// Removes every partition.
    pub fn heal(&mut self) {
        self.blocks.clear();
    }

    /// True when traffic from `from` to `to` is cut.
    pub fn blocked(&self, from: usize, to: usize) -> bool {
        self.blocks
            .iter()
            .any(|b| b.from.contains(from) && b.to.contains(to))
    }

    /// True when this datagram is lost.
    pub fn lost(&self, rng: &mut Rng) -> bool {
        rng.chance(self.config.loss)
    }

    /// The delay of one packet on the link `from -> to`.
    pub fn latency(&self, rng: &mut Rng, from: usize, to: usize) -> Duration {
        // The base latency is a fixed property of the link: derive it from the seed and ends.
        let mut link = Rng::new(
            self.seed ^ ((from as u64) << 32) ^ (to as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
        let base = link.duration_between(self.config.latency_min, self.config.latency_max);
        let jitter = -(1.0 - rng.unit()).ln() * self.config.jitter_mean.as_secs_f64();
        base + Duration::from_secs_f64(jitter.min(1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_way_partitions_block_only_one_direction() {
        let mut n = Network::new(NetworkConfig::lan(), 1);
        n.partition(&[0, 1], &[2], true);
        assert!(n.blocked(0, 2) && n.blocked(1, 2));
        assert!(!n.blocked(2, 0) && !n.blocked(0, 1));
        n.partition(&[3], &[4], false);
        assert!(n.blocked(3, 4) && n.blocked(4, 3));
        n.heal();
        assert!(!n.blocked(0, 2));
    }

    #[test]
    fn latency_stays_near_the_link_range() {
        let n = Network::new(NetworkConfig::lan(), 9);
        let mut rng = Rng::new(2);
        for _ in 0..1000 {
            let l = n.latency(&mut rng, 1, 2);
            assert!(
                l >= Duration::from_micros(100) && l < Duration::from_millis(20),
                "{l:?}"
            );
        }
    }
}
