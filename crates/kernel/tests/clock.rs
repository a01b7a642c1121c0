//! `SimClock` never moves backwards, whatever it is asked.

use proptest::prelude::*;
use tradestack_kernel::{Clock, KernelError, Nanos, SimClock, UnixNanos};

proptest! {
    #[test]
    fn sim_clock_is_monotonic(
        start in -1_000_000i64..1_000_000,
        ops in proptest::collection::vec((any::<bool>(), -2_000_000i64..2_000_000), 1..200),
    ) {
        let clock = SimClock::new(UnixNanos(start));
        let mut last = clock.now();
        for (is_set, v) in ops {
            let result = if is_set {
                clock.set(UnixNanos(v)).map(|()| clock.now())
            } else {
                clock.advance(Nanos(v))
            };
            let now = clock.now();
            prop_assert!(now >= last);
            match result {
                Ok(t) => prop_assert_eq!(t, now),
                Err(KernelError::ClockBackwards { .. } | KernelError::NegativeDuration(_)) => {
                    prop_assert_eq!(now, last, "a refused move leaves the clock alone");
                }
                Err(e) => prop_assert!(false, "unexpected error {e}"),
            }
            last = now;
        }
    }
}

#[test]
fn clock_is_shared_across_threads() {
    let clock = SimClock::new(UnixNanos::ZERO);
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let c = clock.clone();
            std::thread::spawn(move || {
                let mut last = c.now();
                for _ in 0..10_000 {
                    c.advance(Nanos(1)).expect("advance");
                    let now = c.now();
                    assert!(now >= last);
                    last = now;
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
    assert_eq!(clock.now(), UnixNanos(40_000));
}
