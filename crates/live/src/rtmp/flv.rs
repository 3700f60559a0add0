//! FLV, the container ffmpeg reads from Plaza on its stdin: a header, then each RTMP
//! audio, video and data message as a tag, in arrival order.

/// The FLV header and the first "previous tag size" (zero).
pub fn header(has_audio: bool, has_video: bool) -> Vec<u8> {
    let flags = (u8::from(has_audio) << 2) | u8::from(has_video);
    vec![b'F', b'L', b'V', 1, flags, 0, 0, 0, 9, 0, 0, 0, 0]
}

/// One tag (`type_id` 8 audio, 9 video, 18 script data) and its trailing size.
pub fn tag(type_id: u8, timestamp: u32, payload: &[u8], out: &mut Vec<u8>) {
    let size = payload.len() as u32;
    out.push(type_id);
    out.extend_from_slice(&size.to_be_bytes()[1..]);
    out.extend_from_slice(&timestamp.to_be_bytes()[1..]);
    out.push((timestamp >> 24) as u8);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(payload);
    out.extend_from_slice(&(size + 11).to_be_bytes());
}

/// The video codec of a video tag (7 is H.264/AVC).
pub fn video_codec(payload: &[u8]) -> Option<u8> {
    payload.first().map(|byte| byte & 0x0F)
}

/// The audio format of an audio tag (10 is AAC).
pub fn audio_format(payload: &[u8]) -> Option<u8> {
    payload.first().map(|byte| byte >> 4)
}

/// Whether a video tag is a keyframe.
pub fn is_keyframe(payload: &[u8]) -> bool {
    payload.first().is_some_and(|byte| byte >> 4 == 1)
}

/// Whether a tag is a codec's sequence header (AVC decoder configuration or AAC audio
/// specific config), which a decoder needs before any frame: kept to restart ffmpeg.
pub fn is_sequence_header(type_id: u8, payload: &[u8]) -> bool {
    match type_id {
        9 => video_codec(payload) == Some(7) && payload.get(1) == Some(&0),
        8 => audio_format(payload) == Some(10) && payload.get(1) == Some(&0),
        _ => false,
    }
}

pub const H264: u8 = 7;
pub const AAC: u8 = 10;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_has_its_size_its_timestamp_with_the_high_byte_last_and_its_trailer() {
        let mut out = Vec::new();
        tag(9, 0x0102_0304, &[0x17, 0x00, 0xAA], &mut out);
        assert_eq!(out, vec![9, 0, 0, 3, 0x02, 0x03, 0x04, 0x01, 0, 0, 0, 0x17, 0x00, 0xAA, 0, 0, 0, 14]);
        assert_eq!(header(true, true)[4], 5);
        assert_eq!(header(false, true)[4], 1);
    }

    #[test]
    fn codecs_keyframes_and_sequence_headers_are_recognised() {
        assert_eq!(video_codec(&[0x17, 0x01]), Some(H264));
        assert!(is_keyframe(&[0x17, 0x01]));
        assert!(!is_keyframe(&[0x27, 0x01]));
        assert!(is_sequence_header(9, &[0x17, 0x00]));
        assert!(!is_sequence_header(9, &[0x17, 0x01]));
        assert_eq!(audio_format(&[0xAF, 0x00]), Some(AAC));
        assert!(is_sequence_header(8, &[0xAF, 0x00]));
        assert!(!is_sequence_header(8, &[0xAF, 0x01]));
        assert!(!is_sequence_header(18, &[0x02]));
    }
}
