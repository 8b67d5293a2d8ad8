//! Amounts of compute a host offers and an instance needs.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// CPU, in thousandths of a core so that sums stay exact; written as a number of cores
/// (`0.5`, `2`) in specs and the API.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cpu(pub u32);

impl Cpu {
    pub const fn millicores(self) -> u32 {
        self.0
    }

    pub fn cores(self) -> f64 {
        f64::from(self.0) / 1000.0
    }

    /// From a number of cores; `None` unless 0 <= cores <= 4096 with at most 3 decimals.
    pub fn from_cores(cores: f64) -> Option<Cpu> {
        let m = (cores * 1000.0).round();
        // A tiny non-zero amount is not a multiple of 0.001 (the fuzzer sent 6e-282).
        if !cores.is_finite() || !(0.0..=4_096_000.0).contains(&m) || (m == 0.0 && cores != 0.0) {
            return None;
        }
        ((m - cores * 1000.0).abs() < 1e-6).then_some(Cpu(m as u32))
    }
}

impl fmt::Display for Cpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.cores())
    }
}

impl Serialize for Cpu {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.is_multiple_of(1000) {
            s.serialize_u32(self.0 / 1000)
        } else {
            s.serialize_f64(self.cores())
        }
    }
}

impl<'de> Deserialize<'de> for Cpu {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let cores = f64::deserialize(d)?;
        Cpu::from_cores(cores).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{cores} is not a CPU amount: expected 0 to 4096 cores, in steps of 0.001"
            ))
        })
    }
}

impl schemars::JsonSchema for Cpu {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Cpu".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "number", "minimum": 0, "maximum": 4096, "multipleOf": 0.001, "description": "CPU cores, in steps of 0.001"})
    }
}

/// What a host offers to instances.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct Capacity {
    #[serde(default)]
    pub cpu: Cpu,
    #[serde(default)]
    pub memory_mb: u64,
}

/// A change to a host's capacity, as a client sends it: the fields given replace the host's,
/// the others stay (`capacity.memory_mb=2048` alone keeps the host's CPUs).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct CapacityPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Cpu>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
}

impl CapacityPatch {
    /// `current` with the fields this patch gives replaced.
    pub fn apply(&self, current: Capacity) -> Capacity {
        Capacity {
            cpu: self.cpu.unwrap_or(current.cpu),
            memory_mb: self.memory_mb.unwrap_or(current.memory_mb),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_reads_cores_and_keeps_millicores() {
        assert_eq!(serde_json::from_str::<Cpu>("0.5").unwrap(), Cpu(500));
        assert_eq!(serde_json::from_str::<Cpu>("2").unwrap(), Cpu(2000));
        assert_eq!(serde_json::to_string(&Cpu(2000)).unwrap(), "2");
        assert_eq!(serde_json::to_string(&Cpu(250)).unwrap(), "0.25");
        for bad in ["-1", "0.0001", "6.177461043944635e-282", "5000", "\"two\""] {
            assert!(serde_json::from_str::<Cpu>(bad).is_err(), "{bad}");
        }
    }
}
