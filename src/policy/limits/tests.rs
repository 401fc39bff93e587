use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn secs(n: f64) -> Duration {
    Duration::from_secs_f64(n)
}

#[test]
fn total_sessions() {
    let limiter = Limiter::new();
    let limits = LimitSettings {
        max_sessions: Some(2),
        ..LimitSettings::default()
    };
    let now = Instant::now();
    let a = limiter.admit(&limits, ip("192.0.2.1"), now).unwrap();
    let b = limiter.admit(&limits, ip("192.0.2.2"), now).unwrap();
    assert_eq!(
        limiter.admit(&limits, ip("192.0.2.3"), now).unwrap_err(),
        LimitHit::Sessions
    );
    assert_eq!(limiter.active(), 2);
    drop(a);
    assert_eq!(limiter.active(), 1);
    let _c = limiter.admit(&limits, ip("192.0.2.3"), now).unwrap();
    drop(b);
    assert_eq!(limiter.active(), 1);
    assert_eq!(
        limiter.tracked_ips(),
        0,
        "no per-IP limit, no per-IP entries"
    );
}

#[test]
fn sessions_per_ip_count_v4_mapped_and_ipv6_slash_64_together() {
    let limiter = Limiter::new();
    let limits = LimitSettings {
        max_sessions_per_ip: Some(2),
        ..LimitSettings::default()
    };
    let now = Instant::now();
    let a = limiter.admit(&limits, ip("192.0.2.1"), now).unwrap();
    let b = limiter.admit(&limits, ip("::ffff:192.0.2.1"), now).unwrap();
    let hit = limiter.admit(&limits, ip("192.0.2.1"), now).unwrap_err();
    assert_eq!(hit, LimitHit::SessionsPerIp);
    assert_eq!(
        limiter.active(),
        2,
        "the refused session gave its total back"
    );
    let _other = limiter.admit(&limits, ip("192.0.2.2"), now).unwrap();
    drop(a);
    let _again = limiter.admit(&limits, ip("192.0.2.1"), now).unwrap();
    drop(b);

    let v6: Vec<_> = ["2001:db8:1:2::1", "2001:db8:1:2:ffff::9"]
        .iter()
        .map(|a| limiter.admit(&limits, ip(a), now).unwrap())
        .collect();
    assert_eq!(
        limiter
            .admit(&limits, ip("2001:db8:1:2::77"), now)
            .unwrap_err(),
        LimitHit::SessionsPerIp
    );
    let _next_64 = limiter.admit(&limits, ip("2001:db8:1:3::1"), now).unwrap();
    drop(v6);
}

#[test]
fn per_ip_entries_go_when_their_sessions_do() {
    let limiter = Limiter::new();
    let limits = LimitSettings {
        max_sessions_per_ip: Some(5),
        ..LimitSettings::default()
    };
    let now = Instant::now();
    let guards: Vec<_> = (1..=20)
        .map(|i| {
            limiter
                .admit(&limits, ip(&format!("198.51.100.{i}")), now)
                .unwrap()
        })
        .collect();
    assert_eq!(limiter.tracked_ips(), 20);
    drop(guards);
    assert_eq!(limiter.tracked_ips(), 0);
    assert_eq!(limiter.active(), 0);
}

#[test]
fn new_sessions_per_second_per_ip() {
    let limiter = Limiter::new();
    let limits = LimitSettings {
        max_new_sessions_per_ip_per_sec: Some(3),
        ..LimitSettings::default()
    };
    let t0 = Instant::now();
    let client = ip("203.0.113.5");
    for _ in 0..3 {
        drop(limiter.admit(&limits, client, t0).unwrap());
    }
    assert_eq!(
        limiter.admit(&limits, client, t0).unwrap_err(),
        LimitHit::NewSessionsPerIp,
        "closing sessions does not give new-session tokens back"
    );
    assert!(limiter.admit(&limits, ip("203.0.113.6"), t0).is_ok());
    // One token every 1/3 s.
    assert!(limiter.admit(&limits, client, t0 + secs(0.3)).is_err());
    assert!(limiter.admit(&limits, client, t0 + secs(0.34)).is_ok());
    assert!(limiter.admit(&limits, client, t0 + secs(0.35)).is_err());
    assert_eq!(limiter.active(), 0);
}

#[test]
fn rate_entries_are_swept_once_their_bucket_refills() {
    let limiter = Limiter::new();
    let limits = LimitSettings {
        max_new_sessions_per_ip_per_sec: Some(10),
        ..LimitSettings::default()
    };
    let t0 = Instant::now();
    for i in 0..100u8 {
        drop(
            limiter
                .admit(&limits, IpAddr::from([198, 18, 0, i]), t0)
                .unwrap(),
        );
    }
    assert_eq!(limiter.tracked_ips(), 100, "each bucket is still refilling");
    // Two seconds on, every bucket is full again; admitting anyone sweeps its map shard,
    // so touch enough addresses that every shard is hit (missing one of 64 shards in
    // 2048 keyed draws has odds of about 64·e⁻³²).
    let later = t0 + secs(2.0);
    for block in 0..8u8 {
        for i in 0..=255u8 {
            drop(
                limiter
                    .admit(&limits, IpAddr::from([198, 19, block, i]), later)
                    .unwrap(),
            );
        }
    }
    assert_eq!(
        limiter.tracked_ips(),
        2048,
        "only the entries just touched remain"
    );
}

#[test]
fn sessions_per_user() {
    let limiter = Limiter::new();
    let defaults = UserLimits {
        max_sessions: Some(1),
        ..UserLimits::default()
    };
    let limits = LimitSettings::default();
    let now = Instant::now();
    let mut a = limiter.admit(&limits, ip("192.0.2.1"), now).unwrap();
    a.admit_user("alice", defaults, now).unwrap();
    let mut b = limiter.admit(&limits, ip("192.0.2.2"), now).unwrap();
    assert_eq!(
        b.admit_user("alice", defaults, now).unwrap_err(),
        LimitHit::SessionsPerUser
    );
    b.admit_user("bob", defaults, now).unwrap();
    // A per-user override wins over the default.
    let roomy = UserLimits {
        max_sessions: Some(3),
        ..UserLimits::default()
    }
    .or(defaults);
    let mut c = limiter.admit(&limits, ip("192.0.2.3"), now).unwrap();
    c.admit_user("alice", roomy, now).unwrap();
    assert_eq!(limiter.tracked_users(), 2);
    drop((a, c));
    assert_eq!(limiter.tracked_users(), 1);
    drop(b);
    assert_eq!(limiter.tracked_users(), 0);
    assert_eq!(limiter.active(), 0);
}

#[test]
fn bandwidth_is_shared_by_a_users_sessions() {
    let limiter = Limiter::new();
    let user = UserLimits {
        bandwidth_up: Some(1000),
        bandwidth_down: Some(4000),
        ..UserLimits::default()
    };
    let limits = LimitSettings::default();
    let t0 = Instant::now();
    let mut a = limiter.admit(&limits, ip("192.0.2.1"), t0).unwrap();
    a.admit_user("alice", user, t0).unwrap();
    let mut b = limiter.admit(&limits, ip("192.0.2.1"), t0).unwrap();
    b.admit_user("alice", user, t0).unwrap();
    let up_a = a.bandwidth().unwrap().up.as_ref().unwrap();
    let up_b = b.bandwidth().unwrap().up.as_ref().unwrap();
    up_a.take(t0, 1000).unwrap();
    assert_eq!(
        up_b.take(t0, 500),
        Err(Duration::from_millis(500)),
        "the second session sees the first one's usage"
    );
    // The other direction has its own bucket.
    let down = b.bandwidth().unwrap().down.as_ref().unwrap();
    assert_eq!(down.take(t0, 4000), Ok(()));
    let mut other = limiter.admit(&limits, ip("192.0.2.1"), t0).unwrap();
    other.admit_user("bob", user, t0).unwrap();
    assert!(other
        .bandwidth()
        .unwrap()
        .up
        .as_ref()
        .unwrap()
        .take(t0, 1000)
        .is_ok());
    // Without bandwidth limits there are no buckets.
    let mut free = limiter.admit(&limits, ip("192.0.2.1"), t0).unwrap();
    free.admit_user("carol", UserLimits::default(), t0).unwrap();
    assert!(free.bandwidth().is_none());
}

#[test]
fn guards_release_across_threads() {
    let limiter = Limiter::new();
    let limits = LimitSettings {
        max_sessions: Some(64),
        max_sessions_per_ip: Some(16),
        ..LimitSettings::default()
    };
    let user = UserLimits {
        max_sessions: Some(8),
        ..UserLimits::default()
    };
    let now = Instant::now();
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let limiter = limiter.clone();
            let limits = limits.clone();
            s.spawn(move || {
                for round in 0..200 {
                    let mut g = limiter
                        .admit(&limits, IpAddr::from([192, 0, 2, t]), now)
                        .expect("at most one session per thread at a time");
                    g.admit_user(if round % 2 == 0 { "alice" } else { "bob" }, user, now)
                        .expect("at most four sessions per user at a time");
                }
            });
        }
    });
    assert_eq!(limiter.active(), 0);
    assert_eq!(limiter.tracked_ips(), 0);
    assert_eq!(limiter.tracked_users(), 0);
}

#[test]
fn every_hit_has_a_name_and_a_refusal_reply() {
    let names: std::collections::HashSet<_> = LimitHit::ALL.iter().map(|h| h.name()).collect();
    assert_eq!(names.len(), LimitHit::ALL.len());
    assert_eq!(LimitHit::SessionsPerUser.reply().to_u8(), 0x02);
    assert_eq!(
        LimitHit::NewSessionsPerIp.to_string(),
        "new_sessions_per_ip"
    );
}
