//! Ids are opaque strings on the wire. Inside, they are ULID-shaped: 48 bits of
//! milliseconds then 80 random bits, in Crockford base32, so that they sort by creation
//! time (useful for indexes and stable pagination) without revealing a row count.

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A new, unique, time-ordered id of 26 characters.
pub fn new_id() -> String {
    let millis = crate::time::Timestamp::now().unix_millis().max(0) as u128;
    let mut random = [0u8; 10];
    fill_random(&mut random);
    let mut value: u128 = (millis & 0xFFFF_FFFF_FFFF) << 80;
    for (index, byte) in random.iter().enumerate() {
        value |= (*byte as u128) << (8 * (9 - index));
    }
    let mut out = [0u8; 26];
    for (position, slot) in out.iter_mut().enumerate().rev() {
        let shift = 5 * (25 - position);
        *slot = CROCKFORD[((value >> shift) & 0x1F) as usize];
    }
    out.iter().map(|byte| *byte as char).collect()
}

/// `N` bytes from the operating system's secure random source, for session tokens and
/// anything else an attacker must not guess.
pub fn random_token_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    fill_random(&mut bytes);
    bytes
}

fn fill_random(buffer: &mut [u8]) {
    // The OS random source failing is not something a request can recover from; every
    // supported platform provides one.
    #[allow(clippy::expect_used)]
    getrandom::fill(buffer).expect("the operating system's random source is unavailable");
}

/// Lower-case hexadecimal, used to encode tokens and digests.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[(byte >> 4) as usize] as char);
        out.push(DIGITS[(byte & 0x0F) as usize] as char);
    }
    out
}

/// The inverse of [`to_hex`]; `None` for anything that is not even-length lower or upper hex.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    text.as_bytes().chunks(2).map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_26_crockford_characters_and_unique() {
        let first = new_id();
        let second = new_id();
        assert_eq!(first.len(), 26);
        assert!(first.bytes().all(|b| CROCKFORD.contains(&b)));
        assert_ne!(first, second);
    }

    #[test]
    fn ids_made_later_sort_later() {
        let first = new_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = new_id();
        assert!(first[..10] < second[..10]);
    }

    #[test]
    fn hex_round_trips_and_rejects_garbage() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(to_hex(&bytes), "0001abff");
        assert_eq!(from_hex("0001abff").as_deref(), Some(&bytes[..]));
        assert_eq!(from_hex("0g"), None);
        assert_eq!(from_hex("abc"), None);
    }
}
