//! The same components on the wall clock. Assertions are about ordering and "not early",
//! never about how long anything took.

use std::sync::mpsc;
use std::thread;

use tradestack_kernel::{
    Component, Context, EventLog, Nanos, RealTimeDriver, StopReason, UnixNanos,
};

/// Records (scheduled time, dispatch time) for its timers and counts injected events.
#[derive(Default)]
struct Probe {
    due: Vec<UnixNanos>,
    seen: Vec<(UnixNanos, UnixNanos)>,
    injected: Vec<u32>,
}

impl Component<u32> for Probe {
    fn on_start(&mut self, ctx: &mut Context<'_, u32>) {
        for (i, ms) in [3i64, 1, 2].into_iter().enumerate() {
            self.due.push(ctx.now() + Nanos::from_millis(ms));
            // Event value = index into `due`.
            ctx.set_timer(Nanos::from_millis(ms), i as u32);
        }
    }

    fn on_event(&mut self, event: &u32, ctx: &mut Context<'_, u32>) {
        match self.due.get(*event as usize) {
            Some(&due) => self.seen.push((due, ctx.now())),
            None => self.injected.push(*event),
        }
    }
}

#[test]
fn timers_fire_in_order_and_never_early() {
    let mut driver = RealTimeDriver::new(1);
    driver.set_event_log(EventLog::hash_only());
    let id = driver.add_component(Probe::default());
    let out = driver.run_to_completion().expect("run");
    assert_eq!(out.reason, StopReason::QueueEmpty);
    assert_eq!(out.dispatched, 3);
    let probe = driver.component::<Probe>(id).expect("Probe");
    let dues: Vec<UnixNanos> = probe.seen.iter().map(|s| s.0).collect();
    let mut sorted = dues.clone();
    sorted.sort();
    assert_eq!(dues, sorted, "fired in time order");
    let mut last = UnixNanos(i64::MIN);
    for (due, at) in &probe.seen {
        assert!(at >= due, "fired before it was due");
        assert!(*at >= last, "now went backwards");
        last = *at;
    }
    assert_eq!(driver.event_log().map(EventLog::records), Some(3));
}

#[test]
fn injected_events_are_delivered_and_stop_works() {
    let mut driver = RealTimeDriver::new(1);
    let id = driver.add_component(Probe::default());
    let injector = driver.injector();
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let feeder = thread::spawn(move || {
        for v in 100..110 {
            injector.send(v).expect("driver alive");
        }
        ready_rx.recv().expect("go");
        injector.stop().expect("driver alive");
    });
    // Nothing else is scheduled, so without the stop this would run for an hour.
    ready_tx.send(()).expect("feeder alive");
    let out = driver.run_for(Nanos::HOUR).expect("run");
    feeder.join().expect("feeder");
    assert_eq!(out.reason, StopReason::Stopped);
    // A stop takes effect at once; whatever was received but not yet dispatched stays
    // queued and is delivered by the next run call.
    let out = driver.run_to_completion().expect("run");
    assert_eq!(out.reason, StopReason::QueueEmpty);
    let probe = driver.component::<Probe>(id).expect("Probe");
    assert_eq!(probe.injected, (100..110).collect::<Vec<u32>>());
    assert_eq!(probe.seen.len(), 3);
}

#[test]
fn run_until_returns_at_the_deadline() {
    let mut driver: RealTimeDriver<u32> = RealTimeDriver::new(1);
    driver.add_component(Probe::default());
    let deadline = driver.now() + Nanos::from_millis(20);
    let out = driver.run_until(deadline).expect("run");
    assert_eq!(out.reason, StopReason::TimeReached);
    assert!(driver.now() >= deadline);
    assert_eq!(driver.dispatched(), 3);
}

#[test]
fn injector_reports_a_dropped_driver() {
    let driver: RealTimeDriver<u32> = RealTimeDriver::new(1);
    let injector = driver.injector();
    drop(driver);
    assert!(injector.send(1).is_err());
}
