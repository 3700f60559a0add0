//! The RTMP handshake, server side: C0+C1 in, S0+S1+S2 out, C2 in. Plaza answers with the
//! plain handshake (S1's version field zero), which ffmpeg and OBS accept: a client
//! checks the digest of the "complex" handshake only when the server claims a version.

/// C0 and C1: the version byte and 1,536 bytes of time, zeros and randomness.
pub const C0_C1_BYTES: usize = 1 + SIGNATURE_BYTES;
/// C2: an echo of S1.
pub const C2_BYTES: usize = SIGNATURE_BYTES;
const SIGNATURE_BYTES: usize = 1536;
const VERSION: u8 = 3;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("RTMP version {0} (only 3 is spoken; RTMPE is not)")]
    Version(u8),
    #[error("the handshake is {0} bytes, not 1,537")]
    Length(usize),
}

/// S0, S1 and S2 for the client's C0 and C1.
pub fn respond(c0_c1: &[u8]) -> Result<Vec<u8>, HandshakeError> {
    if c0_c1.len() != C0_C1_BYTES {
        return Err(HandshakeError::Length(c0_c1.len()));
    }
    if c0_c1[0] != VERSION {
        return Err(HandshakeError::Version(c0_c1[0]));
    }
    let c1 = &c0_c1[1..];
    let mut out = Vec::with_capacity(1 + 2 * SIGNATURE_BYTES);
    out.push(VERSION);
    // S1: time 0, version 0 (the plain handshake), then random bytes.
    out.extend_from_slice(&[0; 8]);
    while out.len() < 1 + SIGNATURE_BYTES {
        let random = plaza_kernel::random_token_bytes::<32>();
        let room = 1 + SIGNATURE_BYTES - out.len();
        out.extend_from_slice(&random[..room.min(32)]);
    }
    // S2: C1 echoed.
    out.extend_from_slice(c1);
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn s2_echoes_c1_and_s1_claims_no_version() {
        let mut c0_c1 = vec![3u8];
        c0_c1.extend((0..1536).map(|i| (i % 256) as u8));
        let answer = respond(&c0_c1).unwrap();
        assert_eq!(answer.len(), 1 + 1536 + 1536);
        assert_eq!(answer[0], 3);
        assert_eq!(&answer[1..9], &[0; 8]);
        assert_eq!(&answer[1537..], &c0_c1[1..]);
    }

    #[test]
    fn other_versions_and_lengths_are_refused() {
        assert_eq!(respond(&[6u8; 1537]), Err(HandshakeError::Version(6)));
        assert_eq!(respond(&[3u8; 10]), Err(HandshakeError::Length(10)));
    }
}
