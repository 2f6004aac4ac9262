//! The NATS protocol parser and encoder (`federation::nats::proto`):
//! every server operation read back from what the encoder writes, with
//! the input split at every byte; random input never panics and never
//! makes the parser allocate past its limits; bad operations are errors.

use stagebus::federation::nats::proto::*;

fn sample_ops() -> Vec<ServerOp> {
    let mut hdr = Headers::new();
    hdr.insert("Nats-Sequence", "42").insert("X", "a b");
    let mut status = Headers::new();
    status.status = Some(503);
    let mut fc = Headers::new();
    fc.status = Some(100);
    fc.description = "FlowControl Request".into();
    vec![
        ServerOp::Info(Box::new(ServerInfo {
            server_id: "NABC".into(),
            server_name: "n1".into(),
            version: "2.9.10".into(),
            max_payload: 1 << 20,
            headers: true,
            connect_urls: vec!["127.0.0.1:4223".into()],
            ..ServerInfo::default()
        })),
        ServerOp::Ping,
        ServerOp::Msg(Msg {
            subject: "sb.ns.b.b1".into(),
            sid: 7,
            reply: Some("_INBOX.x.3".into()),
            headers: None,
            payload: b"hello\r\nworld".to_vec(),
        }),
        ServerOp::Pong,
        ServerOp::Msg(Msg {
            subject: "a".into(),
            sid: 1,
            reply: None,
            headers: None,
            payload: Vec::new(),
        }),
        ServerOp::Msg(Msg {
            subject: "$KV.b.k".into(),
            sid: 99,
            reply: None,
            headers: Some(hdr),
            payload: (0..=255u8).collect(),
        }),
        ServerOp::Ok,
        ServerOp::Msg(Msg {
            subject: "_INBOX.x.4".into(),
            sid: 2,
            reply: None,
            headers: Some(status),
            payload: Vec::new(),
        }),
        ServerOp::Msg(Msg {
            subject: "d".into(),
            sid: 3,
            reply: Some("fc.1".into()),
            headers: Some(fc),
            payload: Vec::new(),
        }),
        ServerOp::Err("Permissions Violation for Publish to x".into()),
    ]
}

fn encode_all(ops: &[ServerOp]) -> Vec<u8> {
    let mut out = Vec::new();
    for op in ops {
        op.encode(&mut out).unwrap();
    }
    out
}

fn parse_in_pieces(bytes: &[u8], cuts: &[usize]) -> Result<Vec<ServerOp>, ProtoError> {
    let mut p = Parser::new(1 << 20);
    let mut ops = Vec::new();
    let mut from = 0;
    for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
        p.push(&bytes[from..cut]);
        from = cut;
        while let Some(op) = p.next_op()? {
            ops.push(op);
        }
    }
    assert_eq!(p.buffered(), 0);
    Ok(ops)
}

#[test]
fn every_operation_reads_back_split_at_every_byte() {
    let ops = sample_ops();
    let bytes = encode_all(&ops);
    assert_eq!(parse_in_pieces(&bytes, &[]).unwrap(), ops);
    for cut in 0..=bytes.len() {
        assert_eq!(
            parse_in_pieces(&bytes, &[cut]).unwrap(),
            ops,
            "cut at {cut}"
        );
    }
    // And one byte at a time.
    let cuts: Vec<usize> = (1..bytes.len()).collect();
    assert_eq!(parse_in_pieces(&bytes, &cuts).unwrap(), ops);
}

#[test]
fn server_text_forms_are_read() {
    let text = b"info {\"max_payload\":512,\"unknown\":[1]}\r\nMSG  a.b  3  5\r\nhello\r\n\
                 -ERR 'Authorization Violation'\r\nHMSG x 1 r 12 12\r\nNATS/1.0\r\n\r\n\r\n";
    let ops = parse_in_pieces(text, &[]).unwrap();
    assert!(matches!(&ops[0], ServerOp::Info(i) if i.max_payload == 512));
    assert!(
        matches!(&ops[1], ServerOp::Msg(m) if m.subject == "a.b" && m.sid == 3 && m.payload == b"hello")
    );
    assert_eq!(ops[2], ServerOp::Err("Authorization Violation".into()));
    assert!(
        matches!(&ops[3], ServerOp::Msg(m) if m.headers == Some(Headers::default()) && m.reply.as_deref() == Some("r"))
    );
}

#[test]
fn bad_operations_are_errors() {
    let bad: &[&[u8]] = &[
        b"HELLO\r\n",
        b"MSG a\r\n",
        b"MSG a 1 x\r\n",
        b"MSG a 1 -3\r\n",
        b"MSG a x 3\r\nabc\r\n",
        b"MSG a 1 3\r\nabcde\r\n",
        b"HMSG a 1 5 3\r\n",
        b"HMSG a 1 3 3\r\nabc\r\n",
        b"HMSG a 1 12 12\r\nNATS/2.0\r\n\r\n\r\n",
        b"INFO nope\r\n",
        b"MSG a 1 99999999999\r\n",
        b"MSG a 1 2 3 4 5\r\n",
        b"\xff\xfe\r\n",
    ];
    for b in bad {
        assert!(
            parse_in_pieces(b, &[]).is_err(),
            "{:?}",
            String::from_utf8_lossy(b)
        );
    }
    // A control line that never ends is refused once over the limit.
    let mut p = Parser::new(1024);
    p.push(&vec![b'M'; MAX_CONTROL_LINE + 1]);
    assert!(p.next_op().is_err());
    // A message over the payload limit is refused before its bytes come.
    let mut p = Parser::new(1024);
    p.push(b"MSG a 1 1025\r\n");
    assert!(p.next_op().is_err());
}

#[test]
fn the_encoder_writes_what_a_server_reads() {
    let mut out = Vec::new();
    encode_publish("a.b", Some("_INBOX.x.1"), None, b"hi", &mut out).unwrap();
    assert_eq!(out, b"PUB a.b _INBOX.x.1 2\r\nhi\r\n");
    out.clear();
    let mut h = Headers::new();
    h.insert("Nats-Expected-Last-Subject-Sequence", "0");
    encode_publish("$KV.b.k", None, Some(&h), b"v", &mut out).unwrap();
    let block = "NATS/1.0\r\nNats-Expected-Last-Subject-Sequence: 0\r\n\r\n";
    assert_eq!(
        String::from_utf8(out.clone()).unwrap(),
        format!(
            "HPUB $KV.b.k {} {}\r\n{block}v\r\n",
            block.len(),
            block.len() + 1
        )
    );
    assert_eq!(payload_size(Some(&h), b"v"), block.len() + 1);
    out.clear();
    encode_subscribe("sb.*.b.>", Some("q"), 4, &mut out).unwrap();
    encode_unsubscribe(4, Some(2), &mut out);
    encode_unsubscribe(4, None, &mut out);
    assert_eq!(out, b"SUB sb.*.b.> q 4\r\nUNSUB 4 2\r\nUNSUB 4\r\n");
    let mut c = Vec::new();
    encode_connect(
        &ConnectInfo {
            user: Some("u".into()),
            pass: Some("p".into()),
            ..ConnectInfo::default()
        },
        &mut c,
    );
    let text = String::from_utf8(c).unwrap();
    assert!(text.starts_with("CONNECT {") && text.ends_with("}\r\n"));
    assert!(text.contains("\"user\":\"u\"") && !text.contains("auth_token"));
}

#[test]
fn the_encoder_refuses_what_the_protocol_cannot_carry() {
    let mut out = Vec::new();
    for subject in ["", "a b", "a..b", ".a", "a.", "a.*", "a.>", "a\r\n"] {
        assert!(
            encode_publish(subject, None, None, b"", &mut out).is_err(),
            "{subject:?}"
        );
    }
    assert!(encode_publish("a", Some("r r"), None, b"", &mut out).is_err());
    assert!(encode_subscribe("a.>.b", None, 1, &mut out).is_err());
    assert!(encode_subscribe("a", Some("q q"), 1, &mut out).is_err());
    let mut h = Headers::new();
    h.insert("bad name", "v");
    assert!(encode_publish("a", None, Some(&h), b"", &mut out).is_err());
    let mut h = Headers::new();
    h.insert("Name", "v\r\nInjected: 1");
    assert!(encode_publish("a", None, Some(&h), b"", &mut out).is_err());
    assert!(out.is_empty(), "nothing written for a refused operation");
}

/// xorshift, seeded: deterministic and quick.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_input_never_panics() {
    let valid = encode_all(&sample_ops());
    let vocabulary: &[&[u8]] = &[
        b"MSG ",
        b"HMSG ",
        b"INFO ",
        b"PING",
        b"PONG",
        b"+OK",
        b"-ERR ",
        b"\r\n",
        b" ",
        b"1",
        b"12",
        b"99999",
        b"a.b",
        b"NATS/1.0",
        b"{",
        b"}",
        b":",
        b"\r",
        b"\n",
    ];
    for seed in 1..400u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut input = Vec::new();
        let parts = 1 + rng.below(40);
        for _ in 0..parts {
            match rng.below(4) {
                0 => input.extend((0..rng.below(16)).map(|_| rng.next() as u8)),
                1 => input.extend_from_slice(vocabulary[rng.below(vocabulary.len())]),
                2 => {
                    let from = rng.below(valid.len());
                    let to = (from + rng.below(64)).min(valid.len());
                    input.extend_from_slice(&valid[from..to]);
                }
                _ => {
                    // A valid stream with one byte changed.
                    let mut v = valid.clone();
                    let i = rng.below(v.len());
                    v[i] = rng.next() as u8;
                    input.extend_from_slice(&v[..rng.below(v.len())]);
                }
            }
        }
        let mut p = Parser::new(4096);
        let mut at = 0;
        'feed: while at < input.len() {
            let step = 1 + rng.below(32);
            let end = (at + step).min(input.len());
            p.push(&input[at..end]);
            at = end;
            loop {
                match p.next_op() {
                    Ok(Some(op)) => {
                        // What the parser reads, the encoder can write
                        // (for the forms it produces) and read back.
                        let mut again = Vec::new();
                        if op.encode(&mut again).is_ok() {
                            let mut q = Parser::new(1 << 20);
                            q.push(&again);
                            if let ServerOp::Info(_) = op {
                                // INFO drops unknown fields; compare parsed forms.
                                assert!(matches!(q.next_op(), Ok(Some(ServerOp::Info(_)))));
                            } else {
                                assert_eq!(q.next_op().unwrap(), Some(op));
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(_) => break 'feed,
                }
            }
            assert!(
                p.buffered() <= MAX_CONTROL_LINE + 4096 + 64,
                "bounded buffer"
            );
        }
    }
}
