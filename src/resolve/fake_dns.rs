//! A test aid: a tiny DNS server on 127.0.0.1 (UDP and TCP on one port) that answers what
//! the test tells it, and counts the queries it gets. Tests point
//! [`ResolverConfig::servers`](super::ResolverConfig::servers) at it, so no query ever leaves
//! the machine.
//!
//! Names not configured get NXDOMAIN. Over UDP, an answer larger than 512 bytes is sent
//! truncated (TC set, no records), as a real server does; TCP gets it whole.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// The classic DNS UDP payload limit (no EDNS).
const UDP_LIMIT: usize = 512;

/// How long a TCP client may stay silent before the server drops it.
const TCP_IDLE: Duration = Duration::from_secs(2);

/// What the server does with queries for one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// NOERROR: the IPv4 addresses answer A questions, the IPv6 ones AAAA questions (an
    /// empty set is a NODATA answer).
    Addrs {
        addrs: Vec<IpAddr>,
        ttl: u32,
    },
    NxDomain,
    ServFail,
    Refused,
    /// Never answers.
    Silent,
    /// Holds UDP queries unanswered until [`FakeDns::set`] gives the name another reply,
    /// then answers them with it: a lookup the test keeps in flight for as long as it needs.
    Hold,
}

impl Reply {
    pub fn addrs(addrs: &[IpAddr], ttl: u32) -> Reply {
        Reply::Addrs {
            addrs: addrs.to_vec(),
            ttl,
        }
    }
}

pub struct FakeDns {
    addr: SocketAddr,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

struct Shared {
    udp: UdpSocket,
    stop: AtomicBool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    replies: HashMap<String, Reply>,
    udp_queries: HashMap<String, usize>,
    tcp_queries: HashMap<String, usize>,
    held: Vec<(String, Message, SocketAddr)>,
    forge: bool,
}

impl FakeDns {
    /// Binds UDP and TCP on one free port of 127.0.0.1 and starts serving.
    pub fn start() -> io::Result<FakeDns> {
        // The UDP port's TCP twin may be taken by someone else: try a few ports.
        let mut last_err = None;
        for _ in 0..16 {
            let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
            let addr = udp.local_addr()?;
            match TcpListener::bind(addr) {
                Ok(tcp) => return FakeDns::serve(udp, tcp),
                Err(err) => last_err = Some(err),
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("no free port")))
    }

    fn serve(udp: UdpSocket, tcp: TcpListener) -> io::Result<FakeDns> {
        let addr = udp.local_addr()?;
        let shared = Arc::new(Shared {
            udp,
            stop: AtomicBool::new(false),
            state: Mutex::default(),
        });
        let udp_shared = Arc::clone(&shared);
        let tcp_shared = Arc::clone(&shared);
        let threads = vec![
            thread::Builder::new()
                .name("fake-dns-udp".into())
                .spawn(move || udp_shared.serve_udp())?,
            thread::Builder::new()
                .name("fake-dns-tcp".into())
                .spawn(move || tcp_shared.serve_tcp(&tcp))?,
        ];
        Ok(FakeDns {
            addr,
            shared,
            threads,
        })
    }

    /// The address to query (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// From now on, answer queries for `name` (case-insensitive, trailing dot optional)
    /// with `reply`. Queries held by [`Reply::Hold`] are answered with it now.
    pub fn set(&self, name: &str, reply: Reply) {
        let name = key(name);
        let mut state = self.shared.lock();
        state.replies.insert(name.clone(), reply.clone());
        if reply == Reply::Hold {
            return;
        }
        let (release, keep) = std::mem::take(&mut state.held)
            .into_iter()
            .partition(|(held, _, _)| *held == name);
        state.held = keep;
        let forge = state.forge;
        drop(state);
        for (_, query, peer) in release {
            for packet in respond(&query, &reply, forge, false) {
                let _ = self.shared.udp.send_to(&packet, peer);
            }
        }
    }

    /// Before each address answer, send two forgeries the client must ignore: one with
    /// the wrong id, one with the right id and the wrong question. Both carry 192.0.2.66 and
    /// 2001:db8::66.
    pub fn send_forgeries(&self, on: bool) {
        self.shared.lock().forge = on;
    }

    /// Queries received for `name`, over UDP and TCP.
    pub fn queries(&self, name: &str) -> usize {
        let name = key(name);
        let state = self.shared.lock();
        state.udp_queries.get(&name).copied().unwrap_or(0)
            + state.tcp_queries.get(&name).copied().unwrap_or(0)
    }

    /// Queries received for `name` over TCP.
    pub fn tcp_queries(&self, name: &str) -> usize {
        let state = self.shared.lock();
        state.tcp_queries.get(&key(name)).copied().unwrap_or(0)
    }
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake both blocked threads so they see the flag.
        if let Ok(socket) = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)) {
            let _ = socket.send_to(&[], self.addr);
        }
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn serve_udp(&self) {
        let mut buf = [0; 4096];
        while !self.stop.load(Ordering::SeqCst) {
            let Ok((len, peer)) = self.udp.recv_from(&mut buf) else {
                continue;
            };
            let Ok(query) = Message::from_vec(&buf[..len]) else {
                continue;
            };
            for packet in self.answer(&query, peer, false) {
                let _ = self.udp.send_to(&packet, peer);
            }
        }
    }

    fn serve_tcp(&self, listener: &TcpListener) {
        for stream in listener.incoming() {
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            if let Ok(stream) = stream {
                // One connection at a time is plenty for tests.
                let _ = self.serve_tcp_client(stream);
            }
        }
    }

    fn serve_tcp_client(&self, mut stream: TcpStream) -> io::Result<()> {
        stream.set_read_timeout(Some(TCP_IDLE))?;
        let peer = stream.peer_addr()?;
        loop {
            let mut len = [0; 2];
            stream.read_exact(&mut len)?;
            let mut packet = vec![0; usize::from(u16::from_be_bytes(len))];
            stream.read_exact(&mut packet)?;
            let Ok(query) = Message::from_vec(&packet) else {
                return Ok(());
            };
            for packet in self.answer(&query, peer, true) {
                let len = u16::try_from(packet.len()).map_err(io::Error::other)?;
                stream.write_all(&len.to_be_bytes())?;
                stream.write_all(&packet)?;
            }
        }
    }

    /// Counts the query and returns the packets to send back.
    fn answer(&self, query: &Message, peer: SocketAddr, tcp: bool) -> Vec<Vec<u8>> {
        let [question] = query.queries() else {
            return Vec::new();
        };
        let name = key(&question.name().to_ascii());
        let mut state = self.lock();
        let counts = if tcp {
            &mut state.tcp_queries
        } else {
            &mut state.udp_queries
        };
        *counts.entry(name.clone()).or_default() += 1;
        let reply = state.replies.get(&name).cloned().unwrap_or(Reply::NxDomain);
        match reply {
            Reply::Silent => Vec::new(),
            Reply::Hold => {
                if !tcp {
                    state.held.push((name, query.clone(), peer));
                }
                Vec::new()
            }
            reply => respond(query, &reply, state.forge, tcp),
        }
    }
}

/// The packets answering `query` with `reply`: forgeries first if asked, then the answer.
fn respond(query: &Message, reply: &Reply, forge: bool, tcp: bool) -> Vec<Vec<u8>> {
    let mut packets = Vec::new();
    let answer = response(query, reply);
    if forge && matches!(reply, Reply::Addrs { .. }) {
        let forged = Reply::addrs(
            &[
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, 66)),
                "2001:db8::66".parse().expect("valid literal"),
            ],
            3600,
        );
        let mut wrong_id = response(query, &forged);
        wrong_id.set_id(query.id().wrapping_add(1));
        packets.extend(wrong_id.to_vec().ok());
        let mut other = query.clone();
        if let Some(question) = other.queries_mut().first_mut() {
            question.set_name(Name::from_ascii("forged.invalid.").expect("valid name"));
        }
        packets.extend(response(&other, &forged).to_vec().ok());
    }
    if let Ok(mut packet) = answer.to_vec() {
        if !tcp && packet.len() > UDP_LIMIT {
            let mut truncated = answer.clone();
            truncated.take_answers();
            truncated.set_truncated(true);
            packet = truncated.to_vec().unwrap_or_default();
        }
        packets.push(packet);
    }
    packets
}

fn response(query: &Message, reply: &Reply) -> Message {
    let mut message = Message::new();
    message
        .set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(true);
    let Some(question) = query.queries().first() else {
        return message;
    };
    message.add_query(question.clone());
    let code = match reply {
        Reply::Addrs { addrs, ttl } => {
            for addr in addrs {
                let wanted = match addr {
                    IpAddr::V4(_) => RecordType::A,
                    IpAddr::V6(_) => RecordType::AAAA,
                };
                if question.query_type() == wanted {
                    let name = question.name().clone();
                    message.add_answer(Record::from_rdata(name, *ttl, RData::from(*addr)));
                }
            }
            ResponseCode::NoError
        }
        Reply::NxDomain => ResponseCode::NXDomain,
        Reply::ServFail => ResponseCode::ServFail,
        Reply::Refused => ResponseCode::Refused,
        Reply::Silent | Reply::Hold => ResponseCode::NoError,
    };
    message.set_response_code(code);
    message
}

/// Names compare case-insensitively, with or without the root dot.
fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}
