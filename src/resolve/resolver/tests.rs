//! The resolver's behaviour end to end: cache, TTLs, coalescing, queue bound, shutdown,
//! against the fake DNS server (and `localhost` from /etc/hosts for the system backend).

use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};

use super::super::eventually;
use super::super::fake_dns::{FakeDns, Reply};
use super::*;

type Answer = (u64, Result<Addrs, ResolveError>);

/// A notifier that forwards every answer to the test.
struct Inbox(Mutex<Sender<Answer>>);

impl Notify for Inbox {
    fn resolved(&self, ticket: u64, result: Result<Addrs, ResolveError>) {
        let _ = self.0.lock().unwrap().send((ticket, result));
    }
}

fn inbox() -> (Arc<dyn Notify>, Receiver<Answer>) {
    let (tx, rx) = mpsc::channel();
    (Arc::new(Inbox(Mutex::new(tx))), rx)
}

const WAIT: Duration = Duration::from_secs(10);

fn next(rx: &Receiver<Answer>) -> Answer {
    rx.recv_timeout(WAIT).expect("an answer in time")
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn addrs(ips: &[&str]) -> Result<Addrs, ResolveError> {
    Ok(ips.iter().map(|text| ip(text)).collect())
}

fn failed(why: &str) -> Result<Addrs, ResolveError> {
    Err(ResolveError::Failed(why.into()))
}

/// A resolver on `fake` with TTL clamping off and a timeout long enough that no
/// resend happens while a test holds a query.
fn on(fake: &FakeDns) -> ResolverConfig {
    ResolverConfig {
        servers: vec![fake.addr()],
        min_ttl: Duration::ZERO,
        timeout: Duration::from_secs(60),
        ..ResolverConfig::default()
    }
}

#[test]
fn system_backend_resolves_localhost_and_caches_it_case_insensitively() {
    let resolver = Resolver::start(ResolverConfig::default()).unwrap();
    let (notify, rx) = inbox();
    resolver.resolve("LocalHost", 7, notify);
    let (ticket, result) = next(&rx);
    assert_eq!(ticket, 7);
    let found = result.expect("localhost is in /etc/hosts");
    assert!(found.contains(&ip("127.0.0.1")), "{found:?}");
    assert_eq!(resolver.cached("localhost"), Some(Ok(found.clone())));
    assert_eq!(resolver.cached("LOCALHOST"), Some(Ok(found)));
}

#[test]
fn ip_literal_is_answered_at_once() {
    let resolver = Resolver::start(ResolverConfig::default()).unwrap();
    let (notify, rx) = inbox();
    resolver.resolve("2001:db8::5", 1, notify);
    assert_eq!(rx.try_recv(), Ok((1, addrs(&["2001:db8::5"]))));
    assert_eq!(resolver.cached("192.0.2.5"), Some(addrs(&["192.0.2.5"])));
}

#[test]
fn invalid_host_is_refused_at_once() {
    let resolver = Resolver::start(ResolverConfig::default()).unwrap();
    let (notify, rx) = inbox();
    resolver.resolve("bad host", 1, Arc::clone(&notify));
    resolver.resolve("", 2, notify);
    assert_eq!(rx.try_recv(), Ok((1, failed("invalid host name"))));
    assert_eq!(rx.try_recv(), Ok((2, failed("invalid host name"))));
}

#[test]
fn bad_config_is_refused() {
    let err = Resolver::start(ResolverConfig {
        threads: 0,
        ..ResolverConfig::default()
    })
    .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(Resolver::start(ResolverConfig {
        min_ttl: Duration::from_secs(10),
        max_ttl: Duration::from_secs(1),
        ..ResolverConfig::default()
    })
    .is_err());
}

#[test]
fn answer_is_cached_and_reused_without_a_query() {
    let fake = FakeDns::start().unwrap();
    fake.set(
        "www.test",
        Reply::addrs(&[ip("192.0.2.1"), ip("2001:db8::1")], 60),
    );
    let resolver = Resolver::start(on(&fake)).unwrap();
    assert_eq!(resolver.cached("www.test"), None);
    let (notify, rx) = inbox();
    resolver.resolve("www.test", 1, Arc::clone(&notify));
    assert_eq!(next(&rx), (1, addrs(&["2001:db8::1", "192.0.2.1"])));
    assert_eq!(
        resolver.cached("WWW.test"),
        Some(addrs(&["2001:db8::1", "192.0.2.1"]))
    );
    resolver.resolve("www.test", 2, notify);
    assert_eq!(next(&rx), (2, addrs(&["2001:db8::1", "192.0.2.1"])));
    assert_eq!(
        fake.queries("www.test"),
        2,
        "the second lookup came from the cache"
    );
}

#[test]
fn answer_expires_with_its_ttl() {
    let fake = FakeDns::start().unwrap();
    fake.set("short.test", Reply::addrs(&[ip("192.0.2.1")], 1));
    let resolver = Resolver::start(on(&fake)).unwrap();
    let (notify, rx) = inbox();
    resolver.resolve("short.test", 1, Arc::clone(&notify));
    assert_eq!(next(&rx), (1, addrs(&["192.0.2.1"])));
    assert!(resolver.cached("short.test").is_some());
    fake.set("short.test", Reply::addrs(&[ip("192.0.2.2")], 60));
    assert!(eventually(WAIT, || resolver.cached("short.test").is_none()));
    resolver.resolve("short.test", 2, notify);
    assert_eq!(next(&rx), (2, addrs(&["192.0.2.2"])));
    assert_eq!(fake.queries("short.test"), 4);
}

#[test]
fn ttl_is_clamped_from_below() {
    let fake = FakeDns::start().unwrap();
    fake.set("zero.test", Reply::addrs(&[ip("192.0.2.1")], 0));
    let resolver = Resolver::start(ResolverConfig {
        min_ttl: Duration::from_secs(60),
        ..on(&fake)
    })
    .unwrap();
    let (notify, rx) = inbox();
    resolver.resolve("zero.test", 1, notify);
    assert_eq!(next(&rx), (1, addrs(&["192.0.2.1"])));
    // Unclamped, a TTL of 0 would be expired already.
    assert_eq!(resolver.cached("zero.test"), Some(addrs(&["192.0.2.1"])));
}

#[test]
fn ttl_is_clamped_from_above() {
    let fake = FakeDns::start().unwrap();
    fake.set("long.test", Reply::addrs(&[ip("192.0.2.1")], 86_400));
    let resolver = Resolver::start(ResolverConfig {
        max_ttl: Duration::from_millis(200),
        ..on(&fake)
    })
    .unwrap();
    let (notify, rx) = inbox();
    resolver.resolve("long.test", 1, notify);
    assert_eq!(next(&rx), (1, addrs(&["192.0.2.1"])));
    assert!(eventually(WAIT, || resolver.cached("long.test").is_none()));
}

#[test]
fn failures_are_cached_for_the_negative_ttl() {
    let fake = FakeDns::start().unwrap();
    fake.set("broken.test", Reply::ServFail);
    let resolver = Resolver::start(ResolverConfig {
        negative_ttl: Duration::from_millis(300),
        ..on(&fake)
    })
    .unwrap();
    let (notify, rx) = inbox();
    // Unknown to the fake: NXDOMAIN.
    resolver.resolve("gone.test", 1, Arc::clone(&notify));
    assert_eq!(next(&rx), (1, Err(ResolveError::NotFound)));
    assert_eq!(
        resolver.cached("gone.test"),
        Some(Err(ResolveError::NotFound))
    );
    resolver.resolve("gone.test", 2, Arc::clone(&notify));
    assert_eq!(next(&rx), (2, Err(ResolveError::NotFound)));
    assert_eq!(
        fake.queries("gone.test"),
        2,
        "the second answer came from the cache"
    );

    resolver.resolve("broken.test", 3, Arc::clone(&notify));
    let (_, result) = next(&rx);
    assert!(matches!(result, Err(ResolveError::Failed(_))), "{result:?}");
    assert_eq!(resolver.cached("broken.test"), Some(result));

    assert!(eventually(WAIT, || resolver.cached("gone.test").is_none()));
    resolver.resolve("gone.test", 4, notify);
    assert_eq!(next(&rx), (4, Err(ResolveError::NotFound)));
    assert_eq!(
        fake.queries("gone.test"),
        4,
        "asked again once the entry expired"
    );
}

#[test]
fn concurrent_requests_for_one_name_share_one_lookup() {
    let fake = FakeDns::start().unwrap();
    fake.set("busy.test", Reply::Hold);
    let resolver = Resolver::start(on(&fake)).unwrap();
    let (notify, rx) = inbox();
    resolver.resolve("busy.test", 1, Arc::clone(&notify));
    // Both questions of the first lookup are at the server, unanswered.
    assert!(eventually(WAIT, || fake.queries("busy.test") == 2));
    resolver.resolve("BUSY.test", 2, Arc::clone(&notify));
    resolver.resolve("busy.test", 3, notify);
    fake.set("busy.test", Reply::addrs(&[ip("192.0.2.1")], 60));
    let mut answers = [next(&rx), next(&rx), next(&rx)];
    answers.sort_by_key(|(ticket, _)| *ticket);
    let want = addrs(&["192.0.2.1"]);
    assert_eq!(answers, [(1, want.clone()), (2, want.clone()), (3, want)]);
    assert_eq!(
        fake.queries("busy.test"),
        2,
        "one lookup for three requests"
    );
}

#[test]
fn full_cache_evicts_the_least_recently_used_name() {
    let fake = FakeDns::start().unwrap();
    fake.set("a.test", Reply::addrs(&[ip("192.0.2.1")], 60));
    fake.set("b.test", Reply::addrs(&[ip("192.0.2.2")], 60));
    let resolver = Resolver::start(ResolverConfig {
        cache_capacity: 1,
        ..on(&fake)
    })
    .unwrap();
    let (notify, rx) = inbox();
    resolver.resolve("a.test", 1, Arc::clone(&notify));
    assert_eq!(next(&rx), (1, addrs(&["192.0.2.1"])));
    resolver.resolve("b.test", 2, notify);
    assert_eq!(next(&rx), (2, addrs(&["192.0.2.2"])));
    assert_eq!(resolver.cached("a.test"), None);
    assert_eq!(resolver.cached("b.test"), Some(addrs(&["192.0.2.2"])));
}

#[test]
fn full_queue_refuses_at_once() {
    let fake = FakeDns::start().unwrap();
    fake.set("busy.test", Reply::Hold);
    fake.set("queued.test", Reply::addrs(&[ip("192.0.2.2")], 60));
    let resolver = Resolver::start(ResolverConfig {
        threads: 1,
        queue_capacity: 1,
        ..on(&fake)
    })
    .unwrap();
    let (notify, rx) = inbox();
    resolver.resolve("busy.test", 1, Arc::clone(&notify));
    // The only thread is now stuck on busy.test.
    assert!(eventually(WAIT, || fake.queries("busy.test") == 2));
    resolver.resolve("queued.test", 2, Arc::clone(&notify));
    // Joins the queued lookup: needs no queue slot.
    resolver.resolve("queued.test", 3, Arc::clone(&notify));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    resolver.resolve("overflow.test", 4, notify);
    assert_eq!(rx.try_recv(), Ok((4, failed("resolver queue full"))));

    fake.set("busy.test", Reply::addrs(&[ip("192.0.2.1")], 60));
    let mut answers = [next(&rx), next(&rx), next(&rx)];
    answers.sort_by_key(|(ticket, _)| *ticket);
    assert_eq!(
        answers,
        [
            (1, addrs(&["192.0.2.1"])),
            (2, addrs(&["192.0.2.2"])),
            (3, addrs(&["192.0.2.2"])),
        ]
    );
    assert_eq!(fake.queries("overflow.test"), 0);
}

#[test]
fn shutdown_answers_pending_requests_exactly_once() {
    let fake = FakeDns::start().unwrap();
    fake.set("busy.test", Reply::Hold);
    let resolver = Resolver::start(ResolverConfig {
        threads: 1,
        ..on(&fake)
    })
    .unwrap();
    let (notify, rx) = inbox();
    resolver.resolve("busy.test", 1, Arc::clone(&notify));
    assert!(eventually(WAIT, || fake.queries("busy.test") == 2));
    resolver.resolve("queued.test", 2, Arc::clone(&notify));
    resolver.shutdown();
    let mut answers = [rx.try_recv().unwrap(), rx.try_recv().unwrap()];
    answers.sort_by_key(|(ticket, _)| *ticket);
    assert_eq!(
        answers,
        [(1, failed("shutting down")), (2, failed("shutting down"))]
    );
    resolver.resolve("late.test", 3, Arc::clone(&notify));
    assert_eq!(rx.try_recv(), Ok((3, failed("shutting down"))));

    // Let the thread finish its lookup and exit: nobody is answered twice, and the
    // queued name was never asked.
    fake.set("busy.test", Reply::addrs(&[ip("192.0.2.1")], 60));
    resolver.join();
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    drop(notify);
    assert_eq!(fake.queries("queued.test"), 0);
}

#[test]
fn dropping_the_last_handle_shuts_down() {
    let fake = FakeDns::start().unwrap();
    fake.set("busy.test", Reply::Hold);
    let resolver = Resolver::start(on(&fake)).unwrap();
    let (notify, rx) = inbox();
    resolver.resolve("busy.test", 1, notify);
    assert!(eventually(WAIT, || fake.queries("busy.test") == 2));
    let clone = resolver.clone();
    drop(resolver);
    assert_eq!(
        rx.try_recv(),
        Err(TryRecvError::Empty),
        "a clone is still alive"
    );
    drop(clone);
    assert_eq!(rx.try_recv(), Ok((1, failed("shutting down"))));
    fake.set("busy.test", Reply::addrs(&[ip("192.0.2.1")], 60));
}

#[test]
fn stats_count_cache_lookups_joins_failures_and_refusals() {
    use super::super::ResolverCounts;
    let fake = FakeDns::start().unwrap();
    fake.set("www.test", Reply::Hold);
    fake.set("gone.test", Reply::NxDomain);
    let resolver = Resolver::start(on(&fake)).unwrap();
    let stats = resolver.stats();
    let (notify, rx) = inbox();
    assert_eq!(resolver.cached("www.test"), None);
    assert!(
        resolver.cached("192.0.2.1").is_some(),
        "literals are not counted"
    );
    resolver.resolve("www.test", 1, Arc::clone(&notify));
    assert!(eventually(WAIT, || fake.queries("www.test") == 2));
    resolver.resolve("www.test", 2, Arc::clone(&notify));
    fake.set("www.test", Reply::addrs(&[ip("192.0.2.1")], 60));
    assert_eq!(next(&rx).1, addrs(&["192.0.2.1"]));
    assert_eq!(next(&rx).1, addrs(&["192.0.2.1"]));
    assert!(resolver.cached("www.test").is_some());
    resolver.resolve("gone.test", 3, Arc::clone(&notify));
    assert_eq!(next(&rx), (3, Err(ResolveError::NotFound)));
    resolver.resolve("bad host", 4, notify);
    assert_eq!(next(&rx), (4, failed("invalid host name")));
    assert_eq!(
        stats.read(),
        ResolverCounts {
            cache_hits: 1,
            cache_misses: 1,
            lookups: 2,
            joined: 1,
            not_found: 1,
            timeouts: 0,
            errors: 0,
            refused: 1,
        }
    );
}
