//! The foca adapter runs the same scenario on the same virtual network.
#![cfg(feature = "foca")]

use std::time::Duration;

use sim::{Implementation, MembershipScenario};

#[test]
fn foca_detects_every_crash_on_the_shared_network_and_replays_by_seed() {
    let s = MembershipScenario {
        crashes: 3,
        loss: 0.01,
        implementation: Implementation::Foca { buoy_timing: false },
        ..MembershipScenario::new(40, Duration::from_secs(40), 3)
    };
    let a = s.run().unwrap();
    assert_eq!(a.undetected, 0, "{a:?}");
    assert_eq!(a.detect_all_ms.count, 3);
    // foca's LAN suspicion at 40 members is several seconds: slower than Buoy, but bounded.
    assert!(
        a.detect_all_ms.max > 2_000.0 && a.detect_all_ms.max < 30_000.0,
        "{a:?}"
    );
    assert_eq!(a, s.run().unwrap(), "same seed, same run");
    let fast = MembershipScenario {
        implementation: Implementation::Foca { buoy_timing: true },
        ..s
    }
    .run()
    .unwrap();
    assert!(
        fast.detect_all_ms.max < a.detect_all_ms.max,
        "Buoy's timings make foca faster too"
    );
}
