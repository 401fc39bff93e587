//! Byte-exact cases from HAProxy's proxy-protocol.txt, every split point, malformed input.

use super::*;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn tcp(source: &str, destination: &str) -> Endpoints {
    Endpoints::Tcp {
        source: sa(source),
        destination: sa(destination),
    }
}

fn complete(buf: &[u8]) -> (Header, usize) {
    match Header::parse(buf) {
        Ok(Parse::Complete { msg, consumed }) => (msg, consumed),
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
    }
}

fn error(buf: &[u8]) -> Error {
    match Header::parse(buf) {
        Err(e) => e,
        other => panic!("{:?} parsed: {other:?}", String::from_utf8_lossy(buf)),
    }
}

/// Every strict prefix of `header` is Incomplete; the whole, alone or followed by `data`,
/// is Complete and consumes exactly the header. Returns the header.
fn every_split(header: &[u8], data: &[u8]) -> Header {
    for n in 0..header.len() {
        assert_eq!(
            Header::parse(&header[..n]),
            Ok(Parse::Incomplete),
            "prefix of {n} bytes"
        );
    }
    let (msg, consumed) = complete(header);
    assert_eq!(consumed, header.len());
    let mut pipelined = header.to_vec();
    pipelined.extend_from_slice(data);
    assert_eq!(
        complete(&pipelined),
        (msg, header.len()),
        "data after the header is left"
    );
    msg
}

/// HAProxy's v2 signature for TCP over IPv4, 172.19.0.1:42578 -> 172.19.0.3:80 (the
/// layout of section 2.2: signature, ver_cmd 0x21, fam 0x11, len 12, addresses, ports).
const V2_TCP4: [u8; 28] = [
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, // signature
    0x21, 0x11, 0x00, 0x0c, // v2 PROXY, TCP over IPv4, 12 bytes
    0xac, 0x13, 0x00, 0x01, // 172.19.0.1
    0xac, 0x13, 0x00, 0x03, // 172.19.0.3
    0xa6, 0x52, // 42578
    0x00, 0x50, // 80
];

#[test]
fn v1_example_from_the_spec() {
    let line = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
    let h = every_split(line, b"GET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n");
    assert_eq!(h.version, Version::V1);
    assert_eq!(h.endpoints, tcp("192.168.0.1:56324", "192.168.0.11:443"));
    assert_eq!(h.source(), Some(sa("192.168.0.1:56324")));
}

#[test]
fn v1_longest_lines_of_the_spec() {
    let tcp4 = b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n";
    assert_eq!(tcp4.len(), 56);
    assert_eq!(
        every_split(tcp4, b"\x05\x01\x00").endpoints,
        tcp("255.255.255.255:65535", "255.255.255.255:65535")
    );
    let f = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    let tcp6 = format!("PROXY TCP6 {f} {f} 65535 65535\r\n");
    assert_eq!(tcp6.len(), 104);
    assert_eq!(
        every_split(tcp6.as_bytes(), b"\x05").endpoints,
        tcp(&format!("[{f}]:65535"), &format!("[{f}]:65535"))
    );
    let short = b"PROXY UNKNOWN\r\n";
    assert_eq!(short.len(), 15);
    assert_eq!(every_split(short, b"\x05").endpoints, Endpoints::Unknown);
    let worst = format!("PROXY UNKNOWN {f} {f} 65535 65535\r\n");
    assert_eq!(worst.len(), V1_MAX_LEN);
    assert_eq!(
        every_split(worst.as_bytes(), b"\x05").endpoints,
        Endpoints::Unknown
    );
}

#[test]
fn v1_unknown_ignores_whatever_precedes_the_crlf() {
    let (h, n) = complete(b"PROXY UNKNOWN whatever 1.2.3.4 ::1 x y\r\nrest");
    assert_eq!(h.endpoints, Endpoints::Unknown);
    assert_eq!(n, 40);
}

#[test]
fn v1_ipv6_forms() {
    let (h, _) = complete(b"PROXY TCP6 2001:DB8::1 ::ffff:192.0.2.1 0 1080\r\n");
    assert_eq!(
        h.endpoints,
        tcp("[2001:db8::1]:0", "[::ffff:192.0.2.1]:1080")
    );
}

#[test]
fn v1_one_byte_past_the_limit_is_refused() {
    let f = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    let long = format!("PROXY UNKNOWN {f} {f} 65535 655350\r\n");
    assert_eq!(long.len(), V1_MAX_LEN + 1);
    assert_eq!(error(long.as_bytes()), Error::LineTooLong);
    // Without a CRLF, the 107th byte decides.
    let endless = [b"PROXY UNKNOWN ".as_slice(), &[b'a'; 200]].concat();
    assert_eq!(
        Header::parse(&endless[..V1_MAX_LEN - 1]),
        Ok(Parse::Incomplete)
    );
    assert_eq!(error(&endless[..V1_MAX_LEN]), Error::LineTooLong);
}

#[test]
fn v1_malformed_lines() {
    use V1Field::*;
    let cases: &[(&[u8], Error)] = &[
        (
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\n",
            Error::BadLineEnd,
        ),
        (
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\r\n",
            Error::BadLineEnd,
        ),
        (
            b"PROXY TCP4 192.168.0.1\r192.168.0.11 56324 443\r\n",
            Error::BadLineEnd,
        ),
        (b"PROXY TCP4 192.168.0.1\r192.168", Error::BadLineEnd),
        (b"PROXY \r\n", Error::BadField(Protocol)),
        (
            b"PROXY TCP5 1.2.3.4 1.2.3.5 1 2\r\n",
            Error::BadField(Protocol),
        ),
        (
            b"PROXY tcp4 1.2.3.4 1.2.3.5 1 2\r\n",
            Error::BadField(Protocol),
        ),
        (b"PROXY UNKNOWNX\r\n", Error::BadField(Protocol)),
        (
            b"PROXY TCP4 1.2.3.4 1.2.3.5 1\r\n",
            Error::BadField(FieldCount),
        ),
        (
            b"PROXY TCP4 1.2.3.4 1.2.3.5 1 2 3\r\n",
            Error::BadField(FieldCount),
        ),
        (
            b"PROXY TCP4 1.2.3.4 1.2.3.5 1 2 \r\n",
            Error::BadField(FieldCount),
        ),
        (
            b"PROXY TCP4  1.2.3.4 1.2.3.5 1 2\r\n",
            Error::BadField(SourceAddress),
        ),
        (
            b"PROXY TCP4 192.168.000.1 1.2.3.5 1 2\r\n",
            Error::BadField(SourceAddress),
        ),
        (
            b"PROXY TCP4 ::1 1.2.3.5 1 2\r\n",
            Error::BadField(SourceAddress),
        ),
        (
            b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
            Error::BadField(SourceAddress),
        ),
        (
            b"PROXY TCP6 ::1 1.2.3.4 1 2\r\n",
            Error::BadField(DestinationAddress),
        ),
        (
            b"PROXY TCP6 ::1 [::2] 1 2\r\n",
            Error::BadField(DestinationAddress),
        ),
        (
            b"PROXY TCP4 1.2.3.4 1.2.3.\xff 1 2\r\n",
            Error::BadField(DestinationAddress),
        ),
        (
            b"PROXY TCP4 1.2.3.4 1.2.3.5 0443 2\r\n",
            Error::BadField(SourcePort),
        ),
        (
            b"PROXY TCP4 1.2.3.4 1.2.3.5 65536 2\r\n",
            Error::BadField(SourcePort),
        ),
        (
            b"PROXY TCP4 1.2.3.4 1.2.3.5 +1 2\r\n",
            Error::BadField(SourcePort),
        ),
        (
            b"PROXY TCP4 1.2.3.4 1.2.3.5 1 \r\n",
            Error::BadField(DestinationPort),
        ),
        (
            b"PROXY TCP4 1.2.3.4 1.2.3.5 1 99999\r\n",
            Error::BadField(DestinationPort),
        ),
        (
            b"PROXY TCP4 1.2.3.4 1.2.3.5 1 100000\r\n",
            Error::BadField(DestinationPort),
        ),
    ];
    for (line, want) in cases {
        assert_eq!(error(line), *want, "{:?}", String::from_utf8_lossy(line));
    }
}

#[test]
fn not_the_protocol_fails_at_the_first_wrong_byte() {
    assert_eq!(
        error(b"\x05\x01\x00"),
        Error::NotProxyProtocol,
        "a SOCKS5 greeting"
    );
    assert_eq!(
        error(b"\x04\x01"),
        Error::NotProxyProtocol,
        "a SOCKS4 request"
    );
    assert_eq!(error(b"GET / HTTP/1.1\r\n"), Error::NotProxyProtocol);
    assert_eq!(error(b"PROX\x00"), Error::NotProxyProtocol);
    assert_eq!(error(b"PROXY\r\n"), Error::NotProxyProtocol);
    assert_eq!(error(b"proxy "), Error::NotProxyProtocol);
    for i in 0..V2_SIGNATURE.len() {
        let mut sig = V2_SIGNATURE;
        sig[i] ^= 0x40;
        if i == 0 {
            continue; // no longer starts like either version: covered above
        }
        assert_eq!(error(&sig[..=i]), Error::NotProxyProtocol, "byte {i}");
    }
    assert_eq!(Header::parse(b""), Ok(Parse::Incomplete));
}

#[test]
fn v2_tcp4_byte_exact() {
    let h = every_split(&V2_TCP4, b"GET / HTTP/1.1\r\n");
    assert_eq!(h.version, Version::V2);
    assert_eq!(h.endpoints, tcp("172.19.0.1:42578", "172.19.0.3:80"));
    let mut out = vec![0xa5; 3];
    h.emit(&mut out);
    assert_eq!(&out[3..], V2_TCP4, "the encoder writes the same bytes");
}

#[test]
fn v2_tcp6_byte_exact() {
    let mut bytes = V2_SIGNATURE.to_vec();
    bytes.extend_from_slice(&[0x21, 0x21, 0x00, 0x24]);
    bytes.extend_from_slice(&[
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
    ]);
    bytes.extend_from_slice(&[
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02,
    ]);
    bytes.extend_from_slice(&[0xc3, 0x50, 0x04, 0x38]); // 50000, 1080
    let h = every_split(&bytes, &[0x05, 0x01, 0x00]);
    assert_eq!(
        h.endpoints,
        tcp("[2001:db8::1]:50000", "[2001:db8::2]:1080")
    );
    let mut out = Vec::new();
    emit_v2(&h.endpoints, &mut out);
    assert_eq!(out, bytes);
}

#[test]
fn v2_local_and_unspec() {
    let local = [V2_SIGNATURE.as_slice(), &[0x20, 0x00, 0x00, 0x00]].concat();
    let h = every_split(&local, b"\x05");
    assert_eq!(h.endpoints, Endpoints::Local);
    assert_eq!(h.source(), None);
    // LOCAL with addresses present: skipped by their length, and ignored.
    let local_with = [&[0x20, 0x11, 0x00, 0x0c][..], &V2_TCP4[16..]].concat();
    let local_with = [V2_SIGNATURE.as_slice(), &local_with].concat();
    assert_eq!(
        every_split(&local_with, b"\x05").endpoints,
        Endpoints::Local
    );
    // LOCAL claiming a family without addresses: the family is ignored.
    let local_bare = [V2_SIGNATURE.as_slice(), &[0x20, 0x21, 0x00, 0x00]].concat();
    assert_eq!(complete(&local_bare).0.endpoints, Endpoints::Local);
    // PROXY with an unspecified family: use the real endpoints.
    let unspec = [V2_SIGNATURE.as_slice(), &[0x21, 0x00, 0x00, 0x03, 1, 2, 3]].concat();
    assert_eq!(every_split(&unspec, b"\x05").endpoints, Endpoints::Unknown);
    let mut out = Vec::new();
    emit_v2(&Endpoints::Local, &mut out);
    assert_eq!(out, local);
    out.clear();
    emit_v2(&Endpoints::Unknown, &mut out);
    assert_eq!(
        out,
        [V2_SIGNATURE.as_slice(), &[0x21, 0x00, 0x00, 0x00]].concat()
    );
}

#[test]
fn v2_udp_and_unix_fall_back_to_the_real_endpoints() {
    let udp4 = [V2_SIGNATURE.as_slice(), &[0x21, 0x12], &V2_TCP4[14..]].concat();
    assert_eq!(every_split(&udp4, b"x").endpoints, Endpoints::Unknown);
    let mut unix = [V2_SIGNATURE.as_slice(), &[0x21, 0x31, 0x00, 0xd8]].concat();
    unix.extend_from_slice(&[b'/'; 216]);
    assert_eq!(every_split(&unix, b"x").endpoints, Endpoints::Unknown);
}

#[test]
fn v2_tlvs_are_skipped() {
    // TCP4 addresses, then a NOOP TLV (type 0x04, 3 bytes) and a custom one (0xEA,
    // 5 bytes, the kind a cloud balancer adds).
    let tlvs: &[u8] = &[
        0x04, 0x00, 0x03, 0, 0, 0, 0xea, 0x00, 0x05, b'v', b'p', b'c', b'e', b'1',
    ];
    let len = 12 + tlvs.len() as u16;
    let mut bytes = V2_SIGNATURE.to_vec();
    bytes.extend_from_slice(&[0x21, 0x11]);
    bytes.extend_from_slice(&len.to_be_bytes());
    bytes.extend_from_slice(&V2_TCP4[16..]);
    bytes.extend_from_slice(tlvs);
    let h = every_split(&bytes, b"\x05\x01\x00");
    assert_eq!(h.endpoints, tcp("172.19.0.1:42578", "172.19.0.3:80"));
}

#[test]
fn v2_malformed_headers() {
    let with = |ver_cmd: u8, fam: u8, len: u16| {
        let mut b = V2_SIGNATURE.to_vec();
        b.extend_from_slice(&[ver_cmd, fam]);
        b.extend_from_slice(&len.to_be_bytes());
        b.resize(V2_FIXED_LEN + usize::from(len).min(300), 0);
        b
    };
    assert_eq!(error(&with(0x11, 0x11, 12)), Error::UnsupportedVersion(1));
    assert_eq!(error(&with(0x31, 0x11, 12)), Error::UnsupportedVersion(3));
    assert_eq!(error(&with(0x22, 0x11, 12)), Error::UnknownCommand(2));
    assert_eq!(error(&with(0x2f, 0x11, 12)), Error::UnknownCommand(0xf));
    assert_eq!(error(&with(0x21, 0x41, 12)), Error::UnknownFamily(0x41));
    assert_eq!(error(&with(0x21, 0x13, 12)), Error::UnknownFamily(0x13));
    assert_eq!(error(&with(0x21, 0x11, 8)), Error::AddressTooShort);
    assert_eq!(error(&with(0x21, 0x21, 12)), Error::AddressTooShort);
    assert_eq!(error(&with(0x21, 0x12, 11)), Error::AddressTooShort);
    assert_eq!(error(&with(0x21, 0x31, 215)), Error::AddressTooShort);
    // Refused as soon as the byte that is wrong arrives, not after the whole header.
    assert_eq!(
        error(&with(0x11, 0x11, 12)[..13]),
        Error::UnsupportedVersion(1)
    );
    assert_eq!(
        error(&with(0x21, 0x51, 12)[..14]),
        Error::UnknownFamily(0x51)
    );
    let huge = with(0x21, 0x11, u16::MAX);
    assert_eq!(error(&huge[..16]), Error::TooLong(16 + 65535));
    let over = with(0x21, 0x11, (V2_MAX_PAYLOAD + 1) as u16);
    assert_eq!(error(&over[..16]), Error::TooLong(MAX_HEADER_LEN + 1));
    let mut at_cap = with(0x21, 0x11, V2_MAX_PAYLOAD as u16);
    at_cap.resize(MAX_HEADER_LEN, 0);
    assert_eq!(complete(&at_cap).1, MAX_HEADER_LEN);
}

#[test]
fn v1_encoder_round_trips() {
    let cases = [
        (
            tcp("192.168.0.1:56324", "192.168.0.11:443"),
            "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
        ),
        (
            tcp("[2001:db8::1]:1", "[::1]:1080"),
            "PROXY TCP6 2001:db8::1 ::1 1 1080\r\n",
        ),
        // Mixed families travel as IPv6, the IPv4 side mapped.
        (
            tcp("192.0.2.1:5", "[::1]:1080"),
            "PROXY TCP6 ::ffff:192.0.2.1 ::1 5 1080\r\n",
        ),
        (Endpoints::Unknown, "PROXY UNKNOWN\r\n"),
        (Endpoints::Local, "PROXY UNKNOWN\r\n"),
    ];
    for (endpoints, text) in cases {
        let mut out = Vec::new();
        Header {
            version: Version::V1,
            endpoints,
        }
        .emit(&mut out);
        assert_eq!(String::from_utf8(out.clone()).unwrap(), text);
        let (back, n) = complete(&out);
        assert_eq!(n, out.len());
        if let Endpoints::Tcp { .. } = endpoints {
            let (s, d) = match endpoints {
                Endpoints::Tcp {
                    source,
                    destination,
                } => same_family(source, destination),
                _ => unreachable!(),
            };
            assert_eq!(
                back.endpoints,
                Endpoints::Tcp {
                    source: s,
                    destination: d
                }
            );
        } else {
            assert_eq!(back.endpoints, Endpoints::Unknown);
        }
    }
}

#[test]
fn v2_encoder_round_trips_mixed_families_as_ipv6() {
    let mut out = Vec::new();
    emit_v2(&tcp("192.0.2.1:5", "[2001:db8::2]:1080"), &mut out);
    assert_eq!(out[13], 0x21);
    let (h, n) = complete(&out);
    assert_eq!(n, 52);
    assert_eq!(
        h.endpoints,
        tcp("[::ffff:192.0.2.1]:5", "[2001:db8::2]:1080")
    );
}

#[test]
fn arbitrary_bytes_keep_the_invariants() {
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let seeds: Vec<Vec<u8>> = vec![
        V2_TCP4.to_vec(),
        b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n".to_vec(),
        b"PROXY TCP6 2001:db8::1 ::1 1 1080\r\n".to_vec(),
        b"PROXY UNKNOWN\r\n".to_vec(),
        [V2_SIGNATURE.as_slice(), &[0x20, 0x00, 0x00, 0x00]].concat(),
    ];
    for round in 0..5_000 {
        let mut buf = seeds[round % seeds.len()].clone();
        // Mutate a few bytes, maybe truncate, maybe extend.
        for _ in 0..rng.usize(0..4) {
            let i = rng.usize(0..buf.len());
            buf[i] = rng.u8(..);
        }
        buf.truncate(rng.usize(0..=buf.len()));
        if rng.bool() {
            buf.extend((0..rng.usize(0..64)).map(|_| rng.u8(..)));
        }
        super::invariants::check_proxy_header(&buf);
    }
}
