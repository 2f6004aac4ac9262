//! A certificate's subject as text: just enough DER to walk an X.509
//! certificate to its subject name and print it as RFC 4514 does
//! (`CN=alice,O=Example`: the most specific part first, attributes of
//! one part joined by `+`, special characters escaped with `\`).
//!
//! The certificate was verified by rustls before this reads it; the
//! reader still takes any bytes without panicking and answers `None`
//! for what is not a certificate.

/// The subject of the DER certificate `cert`, as RFC 4514 text; None if
/// it cannot be read.
pub(crate) fn subject_of(cert: &[u8]) -> Option<String> {
    let (tag, certificate, _) = element(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, _) = element(certificate)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut rest = tbs;
    let mut field = 0;
    while !rest.is_empty() {
        let (tag, content, after) = element(rest)?;
        rest = after;
        if tag == VERSION {
            continue;
        }
        // serialNumber, signature, issuer, validity, subject.
        if field == 4 {
            return (tag == SEQUENCE).then(|| name_text(content)).flatten();
        }
        field += 1;
    }
    None
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
/// `[0] EXPLICIT Version`.
const VERSION: u8 = 0xa0;

/// One DER element at the start of `der`: (tag, content, what follows).
/// Single-byte tags only, which is all a certificate's name uses.
fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | usize::from(b);
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// A Name (a sequence of sets of attribute type and value) as text.
fn name_text(mut rdns: &[u8]) -> Option<String> {
    let mut parts = Vec::new();
    while !rdns.is_empty() {
        let (tag, set, after) = element(rdns)?;
        rdns = after;
        if tag != SET {
            return None;
        }
        let mut attributes = Vec::new();
        let mut rest = set;
        while !rest.is_empty() {
            let (tag, pair, after) = element(rest)?;
            rest = after;
            if tag != SEQUENCE {
                return None;
            }
            let (tag, oid, value) = element(pair)?;
            if tag != OID {
                return None;
            }
            let (vtag, content, _) = element(value)?;
            let value = match string_value(vtag, content) {
                Some(text) => escape(&text),
                None => format!("#{}", hex(value)),
            };
            attributes.push(format!("{}={value}", attribute_name(oid)));
        }
        parts.push(attributes.join("+"));
    }
    parts.reverse();
    Some(parts.join(","))
}

/// The short name RFC 4514 gives an attribute type, or its dotted OID.
fn attribute_name(oid: &[u8]) -> String {
    let dotted = dotted_oid(oid);
    let short = match dotted.as_str() {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "0.9.2342.19200300.100.1.1" => "UID",
        "0.9.2342.19200300.100.1.25" => "DC",
        "1.2.840.113549.1.9.1" => "emailAddress",
        _ => return dotted,
    };
    short.to_string()
}

fn dotted_oid(oid: &[u8]) -> String {
    let mut arcs: Vec<u64> = Vec::new();
    let mut value: u64 = 0;
    for &b in oid {
        value = (value << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (value / 40).min(2);
                arcs.push(first);
                arcs.push(value - first * 40);
            } else {
                arcs.push(value);
            }
            value = 0;
        }
    }
    arcs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// The text of a directory string; None for a type that is no string.
fn string_value(tag: u8, content: &[u8]) -> Option<String> {
    match tag {
        // UTF8String, PrintableString, IA5String, NumericString,
        // VisibleString.
        0x0c | 0x13 | 0x16 | 0x12 | 0x1a => Some(String::from_utf8_lossy(content).into_owned()),
        // TeletexString: taken as Latin-1, as most software does.
        0x14 => Some(content.iter().map(|&b| char::from(b)).collect()),
        // BMPString: UTF-16, big-endian.
        0x1e => {
            let units: Vec<u16> = content
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
                .collect();
            Some(String::from_utf16_lossy(&units))
        }
        _ => None,
    }
}

/// RFC 4514 escaping of a value.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if c == '\0' {
            out.push_str("\\00");
            continue;
        }
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DER element of `tag` around `content`.
    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if content.len() < 0x80 {
            out.push(content.len() as u8);
        } else {
            out.push(0x82);
            out.extend_from_slice(&(content.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(content);
        out
    }

    fn attribute(oid: &[u8], value: &str) -> Vec<u8> {
        tlv(
            SET,
            &tlv(
                SEQUENCE,
                &[tlv(OID, oid), tlv(0x0c, value.as_bytes())].concat(),
            ),
        )
    }

    fn certificate(subject: &[u8]) -> Vec<u8> {
        let tbs = [
            tlv(VERSION, &tlv(0x02, &[2])),
            tlv(0x02, &[1]),
            tlv(SEQUENCE, &[]),
            tlv(SEQUENCE, &attribute(&[0x55, 4, 3], "issuer")),
            tlv(SEQUENCE, &[]),
            tlv(SEQUENCE, subject),
        ]
        .concat();
        tlv(
            SEQUENCE,
            &[tlv(SEQUENCE, &tbs), tlv(SEQUENCE, &[])].concat(),
        )
    }

    #[test]
    fn a_subject_reads_most_specific_part_first() {
        let subject = [
            attribute(&[0x55, 4, 10], "Example, Inc"),
            attribute(&[0x55, 4, 3], "alice"),
        ]
        .concat();
        assert_eq!(
            subject_of(&certificate(&subject)).as_deref(),
            Some("CN=alice,O=Example\\, Inc")
        );
    }

    #[test]
    fn an_unknown_attribute_is_named_by_its_oid() {
        let subject = attribute(&[0x2a, 0x03, 0x04], "x");
        assert_eq!(
            subject_of(&certificate(&subject)).as_deref(),
            Some("1.2.3.4=x")
        );
    }

    #[test]
    fn bytes_that_are_no_certificate_give_none() {
        for bad in [
            &[][..],
            &[0x30],
            &[0x30, 0x05, 0x30],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
        ] {
            assert_eq!(subject_of(bad), None);
        }
        let full = certificate(&attribute(&[0x55, 4, 3], "alice"));
        for cut in 0..full.len() {
            let _ = subject_of(&full[..cut]);
        }
    }
}
