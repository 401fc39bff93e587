//! The DNS-server backend: A and AAAA queries sent straight to configured servers, on
//! blocking std sockets with deadlines (this runs on a resolver thread, never a shard).
//!
//! Per lookup: both questions go out together on a fresh UDP socket (a fresh random source
//! port) connected to the server, each with a random id; an answer counts only if it comes
//! from that server (the connected socket filters), is a response, and repeats the id and the
//! question, so a blind spoofer must guess 32 bits. A truncated answer is fetched again over
//! TCP. Attempts walk the server list (at least two, so one lost datagram to a lone server is
//! resent), sharing the lookup's timeout; a question that got SERVFAIL or REFUSED is asked of
//! the next server. No EDNS: 512-byte UDP answers every server understands, TCP for more.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use hickory_proto::op::{Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use super::{dedup, Lookup, ResolveError};

/// UDP attempts when there are fewer servers than this: one resend for a lost datagram.
const MIN_ATTEMPTS: usize = 2;

/// Receive buffer. Answers without EDNS fit in 512 bytes, but a server may send more.
const RECV_BUF: usize = 4096;

pub(super) struct DnsClient {
    servers: Vec<SocketAddr>,
    timeout: Duration,
}

/// Where one question (one record type) stands.
#[derive(Debug)]
enum State {
    /// No final answer yet; `error` is the last server failure, if any.
    Open { error: Option<String> },
    /// NOERROR: the addresses (maybe none) and the smallest TTL among the answer records.
    Answered {
        addrs: Vec<IpAddr>,
        ttl: Option<u32>,
    },
    /// NXDOMAIN: the name does not exist at all.
    NoSuchName,
}

#[derive(Debug)]
struct Question {
    rtype: RecordType,
    state: State,
}

impl Question {
    fn new(rtype: RecordType) -> Question {
        Question {
            rtype,
            state: State::Open { error: None },
        }
    }

    fn is_open(&self) -> bool {
        matches!(self.state, State::Open { .. })
    }

    fn fail(&mut self, why: String) {
        if self.is_open() {
            self.state = State::Open { error: Some(why) };
        }
    }
}

impl DnsClient {
    /// `servers` must not be empty.
    pub(super) fn new(servers: Vec<SocketAddr>, timeout: Duration) -> DnsClient {
        assert!(!servers.is_empty(), "the DNS backend needs a server");
        DnsClient { servers, timeout }
    }

    pub(super) fn lookup(&self, host: &str) -> Lookup {
        let name = match Name::from_ascii(host) {
            Ok(mut name) => {
                // Absolute: no search domains, the name is asked as given.
                name.set_fqdn(true);
                name
            }
            Err(err) => {
                return Lookup {
                    result: Err(ResolveError::Failed(format!("invalid host name: {err}"))),
                    ttl: None,
                }
            }
        };
        let deadline = Instant::now() + self.timeout;
        // IPv6 first, as getaddrinfo's default policy (RFC 6724) would order them; the
        // connect side reorders for Happy Eyeballs anyway.
        let mut questions = [
            Question::new(RecordType::AAAA),
            Question::new(RecordType::A),
        ];
        let attempts = self.servers.len().max(MIN_ATTEMPTS);
        for attempt in 0..attempts {
            let settled = !questions.iter().any(Question::is_open);
            let no_name = questions
                .iter()
                .any(|q| matches!(q.state, State::NoSuchName));
            let now = Instant::now();
            if settled || no_name || now >= deadline {
                break;
            }
            // Split what is left evenly over the attempts still to come.
            let slice = (deadline - now) / (attempts - attempt) as u32;
            let server = self.servers[attempt % self.servers.len()];
            if let Err(err) = exchange_udp(server, &name, &mut questions, now + slice, deadline) {
                for question in &mut questions {
                    question.fail(format!("{server}: {err}"));
                }
            }
        }
        conclude(&questions)
    }
}

/// One UDP attempt against `server` for every open question, until each is answered or
/// `until` passes. A truncated answer is fetched over TCP, bounded by the lookup `deadline`.
fn exchange_udp(
    server: SocketAddr,
    name: &Name,
    questions: &mut [Question],
    until: Instant,
    deadline: Instant,
) -> io::Result<()> {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local)?;
    socket.connect(server)?;
    let mut ids: Vec<Option<u16>> = Vec::with_capacity(questions.len());
    for question in questions.iter() {
        ids.push(if question.is_open() {
            let id = rand::random();
            socket.send(&encode_query(id, name, question.rtype)?)?;
            Some(id)
        } else {
            None
        });
    }
    let mut buf = vec![0; RECV_BUF];
    while ids.iter().any(Option::is_some) {
        let Some(left) = until
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
        else {
            return Ok(());
        };
        socket.set_read_timeout(Some(left))?;
        let len = match socket.recv(&mut buf) {
            Ok(len) => len,
            Err(err) if is_timeout(&err) => return Ok(()),
            Err(err) => return Err(err),
        };
        let packet = &buf[..len];
        let Some((header, query)) = read_head(packet) else {
            continue;
        };
        let Some(index) = (0..questions.len()).find(|&i| {
            ids[i] == Some(header.id()) && is_answer_to(&header, &query, name, questions[i].rtype)
        }) else {
            // Late, stray or forged: not an answer to anything open.
            continue;
        };
        ids[index] = None;
        let question = &mut questions[index];
        if header.truncated() {
            match exchange_tcp(server, name, question.rtype, deadline) {
                Ok(state) => question.state = state,
                Err(err) if is_timeout(&err) => {}
                Err(err) => question.fail(format!("{server} (tcp): {err}")),
            }
        } else {
            match Message::from_vec(packet) {
                Ok(message) => question.state = read_answer(&message, server),
                Err(err) => question.fail(format!("{server}: malformed answer: {err}")),
            }
        }
    }
    Ok(())
}

/// Asks one question over TCP (RFC 1035 §4.2.2: two-byte length, then the message).
fn exchange_tcp(
    server: SocketAddr,
    name: &Name,
    rtype: RecordType,
    deadline: Instant,
) -> io::Result<State> {
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| io::Error::from(io::ErrorKind::TimedOut))
    };
    let mut stream = TcpStream::connect_timeout(&server, left()?)?;
    stream.set_nodelay(true)?;
    let id = rand::random();
    let query = encode_query(id, name, rtype)?;
    let mut framed = Vec::with_capacity(2 + query.len());
    framed.extend_from_slice(
        &u16::try_from(query.len())
            .map_err(io::Error::other)?
            .to_be_bytes(),
    );
    framed.extend_from_slice(&query);
    stream.set_write_timeout(Some(left()?))?;
    stream.write_all(&framed)?;
    let mut len = [0; 2];
    stream.set_read_timeout(Some(left()?))?;
    stream.read_exact(&mut len)?;
    let mut packet = vec![0; usize::from(u16::from_be_bytes(len))];
    stream.set_read_timeout(Some(left()?))?;
    stream.read_exact(&mut packet)?;
    let answered = read_head(&packet).is_some_and(|(header, query)| {
        header.id() == id && is_answer_to(&header, &query, name, rtype)
    });
    if !answered {
        return Err(io::Error::other("answer does not match the question"));
    }
    let message = Message::from_vec(&packet)
        .map_err(|err| io::Error::other(format!("malformed answer: {err}")))?;
    Ok(read_answer(&message, server))
}

fn encode_query(id: u16, name: &Name, rtype: RecordType) -> io::Result<Vec<u8>> {
    let mut message = Message::new();
    message
        .set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(name.clone(), rtype));
    message.to_vec().map_err(io::Error::other)
}

/// The header and the (single) question of a packet. Read on their own, so a truncated
/// answer cut mid-record is still recognised.
fn read_head(packet: &[u8]) -> Option<(Header, Query)> {
    let mut decoder = BinDecoder::new(packet);
    let header = Header::read(&mut decoder).ok()?;
    if header.query_count() != 1 {
        return None;
    }
    let query = Query::read(&mut decoder).ok()?;
    Some((header, query))
}

fn is_answer_to(header: &Header, query: &Query, name: &Name, rtype: RecordType) -> bool {
    header.message_type() == MessageType::Response
        && query.query_type() == rtype
        && query.query_class() == DNSClass::IN
        // Case-insensitive, as name comparison is in DNS.
        && query.name() == name
}

fn read_answer(message: &Message, server: SocketAddr) -> State {
    match message.response_code() {
        ResponseCode::NoError => {
            let addrs = message
                .answers()
                .iter()
                .filter_map(|record| match record.data() {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
                    _ => None,
                });
            // CNAMEs on the way count: the answer is only as fresh as its shortest link.
            let ttl = message.answers().iter().map(|record| record.ttl()).min();
            State::Answered {
                addrs: dedup(addrs),
                ttl,
            }
        }
        ResponseCode::NXDomain => State::NoSuchName,
        code => State::Open {
            error: Some(format!("{server} answered {code}")),
        },
    }
}

/// The lookup's result from its questions: NXDOMAIN wins; any address is a success; no
/// address from complete answers is "not found"; otherwise the last failure, or a timeout.
fn conclude(questions: &[Question]) -> Lookup {
    let failed = |result| Lookup { result, ttl: None };
    if questions
        .iter()
        .any(|q| matches!(q.state, State::NoSuchName))
    {
        return failed(Err(ResolveError::NotFound));
    }
    let mut addrs = Vec::new();
    let mut ttl: Option<u32> = None;
    for question in questions {
        if let State::Answered {
            addrs: found,
            ttl: found_ttl,
        } = &question.state
        {
            if !found.is_empty() {
                addrs.extend_from_slice(found);
                ttl = match (ttl, *found_ttl) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
        }
    }
    if !addrs.is_empty() {
        // A partial answer (one family still unanswered) is kept, but only briefly (TTL 0
        // becomes the configured minimum), so the other family is asked again soon.
        let complete = !questions.iter().any(Question::is_open);
        let ttl = if complete { ttl.unwrap_or(0) } else { 0 };
        return Lookup {
            result: Ok(addrs),
            ttl: Some(Duration::from_secs(ttl.into())),
        };
    }
    let last_error = questions.iter().rev().find_map(|q| match &q.state {
        State::Open { error: Some(why) } => Some(why.clone()),
        _ => None,
    });
    if !questions.iter().any(Question::is_open) {
        failed(Err(ResolveError::NotFound))
    } else if let Some(why) = last_error {
        failed(Err(ResolveError::Failed(why)))
    } else {
        failed(Err(ResolveError::Timeout))
    }
}

fn is_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

#[cfg(test)]
mod tests {
    use super::super::eventually;
    use super::super::fake_dns::{FakeDns, Reply};
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn client(fake: &FakeDns, timeout: Duration) -> DnsClient {
        DnsClient::new(vec![fake.addr()], timeout)
    }

    const TIMEOUT: Duration = Duration::from_secs(10);

    #[test]
    fn a_records_only() {
        let fake = FakeDns::start().unwrap();
        fake.set(
            "v4.test",
            Reply::addrs(&[ip("192.0.2.1"), ip("192.0.2.2")], 120),
        );
        let lookup = client(&fake, TIMEOUT).lookup("v4.test");
        assert_eq!(lookup.result, Ok(vec![ip("192.0.2.1"), ip("192.0.2.2")]));
        assert_eq!(lookup.ttl, Some(Duration::from_secs(120)));
        assert_eq!(fake.queries("v4.test"), 2, "one A and one AAAA question");
    }

    #[test]
    fn aaaa_records_only() {
        let fake = FakeDns::start().unwrap();
        fake.set("v6.test", Reply::addrs(&[ip("2001:db8::1")], 30));
        let lookup = client(&fake, TIMEOUT).lookup("v6.test");
        assert_eq!(lookup.result, Ok(vec![ip("2001:db8::1")]));
        assert_eq!(lookup.ttl, Some(Duration::from_secs(30)));
    }

    #[test]
    fn both_families_ipv6_first_and_smallest_ttl() {
        let fake = FakeDns::start().unwrap();
        let addrs = [ip("192.0.2.1"), ip("2001:db8::1"), ip("2001:db8::2")];
        fake.set("dual.test", Reply::addrs(&addrs, 90));
        let lookup = client(&fake, TIMEOUT).lookup("Dual.TEST");
        assert_eq!(
            lookup.result,
            Ok(vec![ip("2001:db8::1"), ip("2001:db8::2"), ip("192.0.2.1")])
        );
        assert_eq!(lookup.ttl, Some(Duration::from_secs(90)));
    }

    #[test]
    fn nxdomain_is_not_found() {
        let fake = FakeDns::start().unwrap();
        fake.set("gone.test", Reply::NxDomain);
        let lookup = client(&fake, TIMEOUT).lookup("gone.test");
        assert_eq!(lookup.result, Err(ResolveError::NotFound));
    }

    #[test]
    fn no_address_records_is_not_found() {
        let fake = FakeDns::start().unwrap();
        fake.set("empty.test", Reply::addrs(&[], 60));
        let lookup = client(&fake, TIMEOUT).lookup("empty.test");
        assert_eq!(lookup.result, Err(ResolveError::NotFound));
    }

    #[test]
    fn servfail_and_refused_are_failures() {
        let fake = FakeDns::start().unwrap();
        fake.set("broken.test", Reply::ServFail);
        fake.set("closed.test", Reply::Refused);
        let client = client(&fake, TIMEOUT);
        match client.lookup("broken.test").result {
            Err(ResolveError::Failed(why)) => assert!(why.contains("Server Failure"), "{why}"),
            other => panic!("expected a failure, got {other:?}"),
        }
        match client.lookup("closed.test").result {
            Err(ResolveError::Failed(why)) => assert!(why.contains("Refused"), "{why}"),
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn servfail_moves_on_to_the_next_server() {
        let broken = FakeDns::start().unwrap();
        let good = FakeDns::start().unwrap();
        broken.set("multi.test", Reply::ServFail);
        good.set("multi.test", Reply::addrs(&[ip("192.0.2.9")], 60));
        let client = DnsClient::new(vec![broken.addr(), good.addr()], TIMEOUT);
        assert_eq!(
            client.lookup("multi.test").result,
            Ok(vec![ip("192.0.2.9")])
        );
        assert_eq!(broken.queries("multi.test"), 2);
        assert_eq!(good.queries("multi.test"), 2);
    }

    #[test]
    fn silent_server_times_out_after_resending() {
        let fake = FakeDns::start().unwrap();
        fake.set("mute.test", Reply::Silent);
        let timeout = Duration::from_millis(400);
        let started = Instant::now();
        let lookup = client(&fake, timeout).lookup("mute.test");
        let took = started.elapsed();
        assert_eq!(lookup.result, Err(ResolveError::Timeout));
        assert!(took >= timeout, "gave up early, after {took:?}");
        assert!(took < timeout * 5, "overran the timeout: {took:?}");
        // Two attempts of two questions each: the resend happened.
        assert!(eventually(TIMEOUT, || fake.queries("mute.test") == 4));
    }

    #[test]
    fn dead_server_fails_without_waiting_for_the_timeout() {
        // A port with nothing behind it: the kernel answers ICMP port unreachable.
        let addr = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap();
        let client = DnsClient::new(vec![addr], TIMEOUT);
        let started = Instant::now();
        match client.lookup("any.test").result {
            Err(ResolveError::Failed(why)) => assert!(why.contains("refused"), "{why}"),
            other => panic!("expected a failure, got {other:?}"),
        }
        assert!(started.elapsed() < TIMEOUT / 2);
    }

    #[test]
    fn truncated_answer_is_fetched_over_tcp() {
        let fake = FakeDns::start().unwrap();
        // 40 A records do not fit in 512 bytes.
        let addrs: Vec<IpAddr> = (1..=40)
            .map(|i| IpAddr::V4(Ipv4Addr::new(198, 51, 100, i)))
            .collect();
        fake.set("big.test", Reply::addrs(&addrs, 60));
        let lookup = client(&fake, TIMEOUT).lookup("big.test");
        assert_eq!(lookup.result, Ok(addrs));
        assert_eq!(
            fake.tcp_queries("big.test"),
            1,
            "only the A question was truncated"
        );
    }

    #[test]
    fn forged_answers_are_ignored() {
        let fake = FakeDns::start().unwrap();
        fake.send_forgeries(true);
        fake.set(
            "real.test",
            Reply::addrs(&[ip("192.0.2.1"), ip("2001:db8::1")], 60),
        );
        let lookup = client(&fake, TIMEOUT).lookup("real.test");
        assert_eq!(lookup.result, Ok(vec![ip("2001:db8::1"), ip("192.0.2.1")]));
    }

    #[test]
    fn invalid_name_fails_without_a_query() {
        let fake = FakeDns::start().unwrap();
        let long_label = "a".repeat(64);
        let lookup = client(&fake, TIMEOUT).lookup(&format!("{long_label}.test"));
        assert!(
            matches!(lookup.result, Err(ResolveError::Failed(_))),
            "{lookup:?}"
        );
        assert_eq!(fake.queries(&format!("{long_label}.test")), 0);
    }

    #[test]
    fn partial_answer_is_kept_briefly() {
        let answered = [
            Question {
                rtype: RecordType::AAAA,
                state: State::Open { error: None },
            },
            Question {
                rtype: RecordType::A,
                state: State::Answered {
                    addrs: vec![ip("192.0.2.1")],
                    ttl: Some(300),
                },
            },
        ];
        let lookup = conclude(&answered);
        assert_eq!(lookup.result, Ok(vec![ip("192.0.2.1")]));
        assert_eq!(lookup.ttl, Some(Duration::ZERO));
    }
}
