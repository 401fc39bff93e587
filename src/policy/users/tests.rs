use super::*;

/// Cheap parameters (8 KiB, one pass) keep these tests fast; verification reads the
/// parameters from the hash itself.
fn cheap() -> Params {
    Params::new(8, 1, 1, None).unwrap()
}

#[test]
fn parses_entries_comments_and_blank_lines() {
    let users = Users::parse("# team\nalice:secret\n\n  \nbob:pa:ss\r\n").unwrap();
    assert_eq!(users.len(), 2);
    assert!(users.verify(b"alice", b"secret"));
    assert!(users.verify(b"bob", b"pa:ss"), "password keeps its colons");
    assert!(!users.verify(b"alice", b"Secret"));
    assert!(!users.verify(b"carol", b"secret"));
    assert!(!users.verify(b"alice", b""));
}

#[test]
fn errors_name_the_line() {
    let e = Users::parse("alice:x\nnocolon\n").unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.to_string().starts_with("line 2: "), "{e}");
    assert_eq!(Users::parse(":pw").unwrap_err().line, 1);
    let long = format!("u:{}", "p".repeat(256));
    assert_eq!(Users::parse(&long).unwrap_err().line, 1);
    let dup = Users::parse("a:1\n#\na:2").unwrap_err();
    assert_eq!(dup.line, 3);
    assert!(dup.message.contains("line 1"));
}

#[test]
fn empty_password_is_allowed_and_checked() {
    let users = Users::parse("guest:").unwrap();
    assert!(users.verify(b"guest", b""));
    assert!(!users.verify(b"guest", b"x"));
}

#[test]
fn hashed_entries_verify_with_argon2() {
    let hash = hash_password(b"correct horse", cheap());
    assert!(hash.starts_with("$argon2id$v=19$m=8,t=1,p=1$"), "{hash}");
    let users = Users::parse(&format!("alice:{hash}\nbob:plain\n")).unwrap();
    assert!(users.verify(b"alice", b"correct horse"));
    assert!(!users.verify(b"alice", b"correct horse "));
    assert!(
        !users.verify(b"alice", hash.as_bytes()),
        "the hash is not the password"
    );
    assert!(users.lookup(b"alice").unwrap().is_slow());
    assert!(!users.lookup(b"bob").unwrap().is_slow());
    assert!(users.lookup(b"carol").is_none());
}

#[test]
fn fast_path_answers_plain_and_cached_hashed_credentials() {
    let hash = hash_password(b"pw", cheap());
    let users = Users::parse(&format!("alice:{hash}\nbob:plain\n")).unwrap();
    let now = Instant::now();
    assert!(matches!(
        users.verify_fast(b"bob", b"plain", now),
        Verdict::Accepted
    ));
    assert!(matches!(
        users.verify_fast(b"bob", b"nope", now),
        Verdict::Rejected
    ));

    // First time: slow. A failure is not remembered.
    let Verdict::Slow(job) = users.verify_fast(b"alice", b"wrong", now) else {
        panic!("hashed entries start slow");
    };
    assert!(!job.run(now));
    assert!(matches!(
        users.verify_fast(b"alice", b"wrong", now),
        Verdict::Slow(_)
    ));
    // A success is: the next check with the same credentials costs no argon2.
    let Verdict::Slow(job) = users.verify_fast(b"alice", b"pw", now) else {
        panic!("hashed entries start slow");
    };
    assert!(job.run(now));
    assert!(matches!(
        users.verify_fast(b"alice", b"pw", now),
        Verdict::Accepted
    ));
    assert!(matches!(
        users.verify_fast(b"alice", b"pw2", now),
        Verdict::Slow(_)
    ));
    // Until it expires.
    let later = now + crate::policy::verify_cache::DEFAULT_TTL;
    assert!(matches!(
        users.verify_fast(b"alice", b"pw", later),
        Verdict::Slow(_)
    ));
}

#[test]
fn unknown_users_cost_an_argon2_check_when_entries_are_hashed() {
    let hash = hash_password(b"pw", cheap());
    let users = Users::parse(&format!("bob:plain\nalice:{hash}\n")).unwrap();
    let now = Instant::now();
    let Verdict::Slow(job) = users.verify_fast(b"eve", b"pw", now) else {
        panic!("an unknown user must take as long as a known hashed one");
    };
    assert!(
        job.secret
            .stored()
            .starts_with(b"$argon2id$v=19$m=8,t=1,p=1$"),
        "the decoy has the stored hash's parameters"
    );
    assert!(!job.run(now));
    let decoy = users.decoy.as_ref().unwrap();
    assert!(!decoy.verify(b"pw"), "the decoy is not a user's password");
    assert!(matches!(
        users.verify_fast(b"eve", b"pw", now),
        Verdict::Slow(_)
    ));
    // Without hashes every answer is fast anyway.
    let plain = Users::parse("bob:plain\n").unwrap();
    assert!(plain.decoy.is_none());
    assert!(matches!(
        plain.verify_fast(b"eve", b"plain", now),
        Verdict::Rejected
    ));
}

#[test]
fn a_reloaded_file_with_a_new_hash_does_not_reuse_old_successes() {
    let old = Users::parse(&format!("alice:{}", hash_password(b"old", cheap()))).unwrap();
    let now = Instant::now();
    let Verdict::Slow(job) = old.verify_fast(b"alice", b"old", now) else {
        panic!("slow first");
    };
    assert!(job.run(now));
    let new = Users::parse(&format!("alice:{}", hash_password(b"new", cheap()))).unwrap();
    assert!(matches!(
        new.verify_fast(b"alice", b"old", now),
        Verdict::Slow(_)
    ));
}

#[test]
fn bad_hashes_are_refused_with_the_line() {
    let good = hash_password(b"x", cheap());
    for (bad, why) in [
        ("$argon2id$v=19$m=8,t=1,p=1".to_string(), "lacks its salt"),
        ("$argon2id$garbage".to_string(), "malformed"),
        (good.replace("argon2id", "argon2xx"), "unknown algorithm"),
        (good.replace("m=8,", "m=4194304,"), "KiB of memory"),
    ] {
        let e = Users::parse(&format!("# c\nalice:{bad}\n")).unwrap_err();
        assert_eq!(e.line, 2, "{bad}");
        assert!(e.message.contains(why), "{bad}: {e}");
        assert!(e.message.contains("hash-password"), "{e}");
    }
}

#[test]
fn default_parameters_are_owasp_sane() {
    let p = Params::default();
    assert!(p.m_cost() >= 19 * 1024 && p.t_cost() >= 2, "{p:?}");
}

#[test]
fn usernames_split_into_user_and_session() {
    assert_eq!(
        split_username("alice-session-abc123", "-session-"),
        ("alice", Some("abc123"))
    );
    assert_eq!(split_username("alice", "-session-"), ("alice", None));
    assert_eq!(
        split_username("alice-session-", "-session-"),
        ("alice", None)
    );
    assert_eq!(
        split_username("a-session-b-session-c", "-session-"),
        ("a", Some("b-session-c")),
        "the first separator splits"
    );
    assert_eq!(split_username("alice_s_x", "_s_"), ("alice", Some("x")));
    assert_eq!(
        split_username("alice-session-x", ""),
        ("alice-session-x", None)
    );
}
