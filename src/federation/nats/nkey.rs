//! NATS NKeys: a user's Ed25519 seed, as `nk -gen user` writes it, and
//! the answer to a server's challenge.
//!
//! A server configured with `authorization { users = [ { nkey: U… } ] }`
//! sends a `nonce` in `INFO`; the client answers in `CONNECT` with its
//! public key (`nkey`) and its signature of the nonce (`sig`). The seed
//! never leaves the process.
//!
//! Encoding (the NKeys format): base32 without padding of a prefix, the
//! key and a CRC-16 (XMODEM, little-endian). A seed's prefix is two
//! bytes, `S` and the key's type (`U` for a user), then the 32-byte
//! Ed25519 seed; a public key's prefix is one byte. Signatures are
//! base64url without padding. A `.creds` file's user JWT, when there is
//! one, goes in `CONNECT`'s `jwt` (operator mode); it is passed on as
//! read, and only tested against servers without operator mode.
//!
//! Signing uses ring's Ed25519, which the `tls` feature brings in.

use ring::signature::{Ed25519KeyPair, KeyPair as _};

/// Prefix byte of a seed (`S` in base32).
const PREFIX_SEED: u8 = 18 << 3;
/// Prefix byte of a user's key (`U` in base32).
const PREFIX_USER: u8 = 20 << 3;

/// A user's NKey, from its seed. Its `Debug` shows the public key only.
pub struct NKey {
    pair: Ed25519KeyPair,
    public: String,
    jwt: Option<String>,
}

impl std::fmt::Debug for NKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NKey({})", self.public)
    }
}

impl NKey {
    /// The key of a user seed (`SU…`, 58 characters). `text` may be the
    /// seed alone or a file holding it: the first line that starts with
    /// `SU` is taken, so a seed file and a `.creds` file (whose JWT is
    /// kept too) both read.
    /// Errors say what is wrong without echoing the secret.
    pub fn from_seed(text: &str) -> Result<NKey, String> {
        let seed = text
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("SU"))
            .ok_or("no user seed (a line starting with SU) in the NKey seed")?;
        let raw = decode_checked(seed).map_err(|e| format!("the NKey seed {e}"))?;
        let kind = ((raw[0] & 0b111) << 5) | (raw[1] >> 3);
        if raw[0] & !0b111 != PREFIX_SEED || kind != PREFIX_USER || raw.len() != 34 {
            return Err("the NKey seed is not a user seed (SU…)".into());
        }
        let pair = Ed25519KeyPair::from_seed_unchecked(&raw[2..])
            .map_err(|_| "the NKey seed is not an Ed25519 seed".to_string())?;
        let mut public = vec![PREFIX_USER];
        public.extend_from_slice(pair.public_key().as_ref());
        let public = encode_checked(&public);
        // A `.creds` file also holds the user's JWT, which servers in
        // operator mode want beside the signature.
        let jwt = text
            .lines()
            .skip_while(|l| !l.contains("BEGIN NATS USER JWT"))
            .nth(1)
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty() && !l.starts_with("---"));
        Ok(NKey { pair, public, jwt })
    }

    /// The user's JWT, when the text was a `.creds` file.
    pub fn jwt(&self) -> Option<&str> {
        self.jwt.as_deref()
    }

    /// The public key (`U…`), what the server's config names.
    pub fn public_key(&self) -> &str {
        &self.public
    }

    /// The signature of the server's `nonce`, as `CONNECT`'s `sig`.
    pub fn sign(&self, nonce: &[u8]) -> String {
        base64url(self.pair.sign(nonce).as_ref())
    }
}

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// Base32 of `bytes` and their CRC-16.
fn encode_checked(bytes: &[u8]) -> String {
    let mut all = bytes.to_vec();
    all.extend_from_slice(&crc16(bytes).to_le_bytes());
    let mut out = String::with_capacity(all.len() * 8 / 5 + 1);
    let (mut acc, mut bits) = (0u32, 0);
    for &b in &all {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(BASE32[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(BASE32[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// The bytes of a base32 text whose last two bytes are the CRC-16 of
/// the rest, without them.
fn decode_checked(text: &str) -> Result<Vec<u8>, &'static str> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes() {
        let v = BASE32
            .iter()
            .position(|&a| a == c)
            .ok_or("holds a character that is not base32")?;
        acc = (acc << 5) | v as u32;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    if out.len() < 3 {
        return Err("is too short");
    }
    let crc = u16::from_le_bytes([out[out.len() - 2], out[out.len() - 1]]);
    out.truncate(out.len() - 2);
    if crc16(&out) != crc {
        return Err("does not match its checksum (mistyped or cut?)");
    }
    Ok(out)
}

/// CRC-16/XMODEM (polynomial 0x1021, initial 0).
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc = 0u16;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Base64url without padding.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // The NATS clients' own test vector.
    const SEED: &str = "SUAMK2FG4MI6UE3ACF3FK3OIQBCEIEZV7NSWFFEW63UXMRLFM2XLAXK4GY";

    #[test]
    fn the_nats_test_vector_gives_its_public_key_and_signature() {
        let key = NKey::from_seed(SEED).unwrap();
        assert_eq!(
            key.public_key(),
            "UAT6BWCSCWLUKJT6K6MBJJOEOTXZ5AJDOYKNEVRFC7VNO6OA43N4TRNO"
        );
        assert_eq!(
            key.sign(b"nonce"),
            "m50It12aTgfbJwsQhucujqhXbsq7tLM-Mf_hSjBQsG_4onm8y2Vkw6JG1bbcDkdxXe-Ng0K-7X9ov4rZ4wFcDg"
        );
        assert!(!format!("{key:?}").contains(SEED));
    }

    #[test]
    fn a_seed_is_found_in_a_file_and_bad_seeds_are_refused_without_echo() {
        let creds = format!(
            "-----BEGIN NATS USER JWT-----\neyJ0.e30.sig\n------END NATS USER JWT------\n\n\
             -----BEGIN USER NKEY SEED-----\n{SEED}\n------END USER NKEY SEED------\n"
        );
        assert_eq!(NKey::from_seed(&creds).unwrap().jwt(), Some("eyJ0.e30.sig"));
        assert_eq!(NKey::from_seed(SEED).unwrap().jwt(), None);
        let mut typo = SEED.to_string();
        typo.replace_range(10..11, "B");
        let e = NKey::from_seed(&typo).unwrap_err();
        assert!(e.contains("checksum") && !e.contains(&typo), "{e}");
        assert!(NKey::from_seed("SU!!").unwrap_err().contains("base32"));
        assert!(NKey::from_seed("").unwrap_err().contains("no user seed"));
        // A public key where a seed belongs.
        let e = NKey::from_seed("SUAT6BWCSCWLUKJT6K6MBJJOEOTXZ5AJDOYKNEVRFC7VNO6OA43N4TRNO")
            .unwrap_err();
        assert!(
            e.contains("checksum") || e.contains("not a user seed"),
            "{e}"
        );
    }

    #[test]
    fn base64url_and_base32_round_the_edges() {
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
        let text = encode_checked(b"stagebus");
        assert_eq!(decode_checked(&text).unwrap(), b"stagebus");
    }
}
