//! The RTMP chunk stream: messages cut into chunks of at most the chunk size, each with a
//! basic header (format and chunk stream id) and a message header that omits whatever
//! repeats the previous chunk of the same chunk stream. The decoder is sans-IO: bytes go
//! in, whole messages come out, so every case is a unit test.

use bytes::{Buf, BytesMut};
use std::collections::HashMap;

/// The chunk size every RTMP peer starts with.
pub const DEFAULT_CHUNK_SIZE: usize = 128;
/// The largest message Plaza accepts (a keyframe at a high bit rate is under 1 MiB).
pub const MESSAGE_BYTES_MAX: usize = 8 * 1024 * 1024;
/// The most chunk streams one connection may use at once (publishers use a handful).
pub const CHUNK_STREAMS_MAX: usize = 64;
/// The largest chunk size a peer may set (the format's own bound is 2^31 - 1).
pub const CHUNK_SIZE_MAX: usize = 16 * 1024 * 1024;

/// Message type ids.
pub mod kind {
    pub const SET_CHUNK_SIZE: u8 = 1;
    pub const ABORT: u8 = 2;
    pub const ACKNOWLEDGEMENT: u8 = 3;
    pub const USER_CONTROL: u8 = 4;
    pub const WINDOW_ACK_SIZE: u8 = 5;
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    pub const AUDIO: u8 = 8;
    pub const VIDEO: u8 = 9;
    pub const DATA_AMF3: u8 = 15;
    pub const COMMAND_AMF3: u8 = 17;
    pub const DATA_AMF0: u8 = 18;
    pub const COMMAND_AMF0: u8 = 20;
}

/// One whole message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub chunk_stream_id: u32,
    /// Milliseconds, absolute (deltas already applied), wrapping at 2^32.
    pub timestamp: u32,
    pub type_id: u8,
    pub stream_id: u32,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("a message of {0} bytes is over the limit")]
    MessageTooLarge(usize),
    #[error("more than {CHUNK_STREAMS_MAX} chunk streams")]
    TooManyChunkStreams,
    #[error("chunk stream {0} continues a message it never began")]
    NoPreviousHeader(u32),
    #[error("chunk stream {0} began a new header inside a message")]
    InterruptedMessage(u32),
    #[error("a chunk size of {0} is not allowed")]
    BadChunkSize(u32),
}

/// What the decoder remembers of each chunk stream.
#[derive(Debug, Default, Clone)]
struct StreamState {
    /// Whether a header was seen (a chunk of format 1–3 needs one before it).
    started: bool,
    timestamp: u32,
    /// The last timestamp field (absolute after format 0, a delta after 1 and 2), which
    /// a format-3 chunk beginning a new message adds again, as ffmpeg and librtmp do.
    timestamp_field: u32,
    /// Whether that field was extended (then every chunk of the message carries 4 bytes).
    extended: bool,
    length: usize,
    type_id: u8,
    stream_id: u32,
    /// The message being assembled.
    partial: Vec<u8>,
}

/// Decodes chunks into messages.
#[derive(Debug)]
pub struct Decoder {
    buffer: BytesMut,
    chunk_size: usize,
    streams: HashMap<u32, StreamState>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self { buffer: BytesMut::with_capacity(64 * 1024), chunk_size: DEFAULT_CHUNK_SIZE, streams: HashMap::new() }
    }
}

impl Decoder {
    /// Adds bytes read from the peer.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// Bytes buffered and not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// The peer's Set Chunk Size.
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), ChunkError> {
        let size = size & 0x7FFF_FFFF;
        if size == 0 || size as usize > CHUNK_SIZE_MAX {
            return Err(ChunkError::BadChunkSize(size));
        }
        self.chunk_size = size as usize;
        Ok(())
    }

    /// The peer's Abort: forgets the partial message of a chunk stream.
    pub fn abort(&mut self, chunk_stream_id: u32) {
        if let Some(state) = self.streams.get_mut(&chunk_stream_id) {
            state.partial = Vec::new();
        }
    }

    /// The next whole message, or `None` until more bytes arrive. Protocol control
    /// messages are returned like any other; the caller applies them (`set_chunk_size`
    /// must be applied before the next call, since it changes how chunks are cut).
    pub fn next_message(&mut self) -> Result<Option<Message>, ChunkError> {
        loop {
            let Some((consumed, chunk_stream_id)) = self.parse_chunk()? else { return Ok(None) };
            self.buffer.advance(consumed);
            let state = self.streams.get_mut(&chunk_stream_id).ok_or(ChunkError::NoPreviousHeader(chunk_stream_id))?;
            if state.partial.len() == state.length {
                let payload = std::mem::take(&mut state.partial);
                return Ok(Some(Message {
                    chunk_stream_id,
                    timestamp: state.timestamp,
                    type_id: state.type_id,
                    stream_id: state.stream_id,
                    payload,
                }));
            }
        }
    }

    /// Parses one chunk if it is all buffered: how many bytes it took, and its stream.
    fn parse_chunk(&mut self) -> Result<Option<(usize, u32)>, ChunkError> {
        let bytes = &self.buffer[..];
        let Some(&first) = bytes.first() else { return Ok(None) };
        let format = first >> 6;
        let (chunk_stream_id, mut at) = match first & 0x3F {
            0 => match bytes.get(1) {
                Some(&low) => (64 + u32::from(low), 2),
                None => return Ok(None),
            },
            1 => match (bytes.get(1), bytes.get(2)) {
                (Some(&low), Some(&high)) => (64 + u32::from(low) + 256 * u32::from(high), 3),
                _ => return Ok(None),
            },
            id => (u32::from(id), 1),
        };
        let header_length = [11, 7, 3, 0][format as usize];
        let Some(header) = bytes.get(at..at + header_length) else { return Ok(None) };
        at += header_length;
        if !self.streams.contains_key(&chunk_stream_id) {
            if format != 0 {
                return Err(ChunkError::NoPreviousHeader(chunk_stream_id));
            }
            if self.streams.len() >= CHUNK_STREAMS_MAX {
                return Err(ChunkError::TooManyChunkStreams);
            }
        }
        let previous = self.streams.get(&chunk_stream_id).cloned().unwrap_or_default();
        if format != 0 && !previous.started {
            return Err(ChunkError::NoPreviousHeader(chunk_stream_id));
        }
        let mut state = previous;
        let beginning = state.partial.is_empty();
        if !beginning && format != 3 {
            return Err(ChunkError::InterruptedMessage(chunk_stream_id));
        }
        let u24 = |slice: &[u8]| u32::from_be_bytes([0, slice[0], slice[1], slice[2]]);
        let field = (format < 3).then(|| u24(&header[0..3]));
        if format <= 1 {
            state.length = u24(&header[3..6]) as usize;
            state.type_id = header[6];
            if state.length > MESSAGE_BYTES_MAX {
                return Err(ChunkError::MessageTooLarge(state.length));
            }
        }
        if format == 0 {
            state.stream_id = u32::from_le_bytes([header[7], header[8], header[9], header[10]]);
        }
        let extended = match field {
            Some(field) => field == 0xFF_FFFF,
            None => state.extended,
        };
        let mut timestamp_field = field.unwrap_or(state.timestamp_field);
        if extended {
            let Some(extension) = bytes.get(at..at + 4) else { return Ok(None) };
            at += 4;
            if field.is_some() || beginning {
                timestamp_field = u32::from_be_bytes([extension[0], extension[1], extension[2], extension[3]]);
            }
        }
        let remaining = state.length - state.partial.len();
        let take = remaining.min(self.chunk_size);
        let Some(data) = bytes.get(at..at + take) else { return Ok(None) };
        if beginning {
            state.timestamp = if format == 0 { timestamp_field } else { state.timestamp.wrapping_add(timestamp_field) };
            state.timestamp_field = timestamp_field;
            state.extended = extended;
            state.partial = Vec::with_capacity(state.length);
        }
        state.partial.extend_from_slice(data);
        state.started = true;
        at += take;
        self.streams.insert(chunk_stream_id, state);
        Ok(Some((at, chunk_stream_id)))
    }
}

/// Cuts a message into chunks of `chunk_size`: a format-0 chunk, then format-3 ones.
/// Plaza sends only on chunk streams 2–63, so the basic header is one byte.
pub fn encode(message: &Message, chunk_size: usize, out: &mut Vec<u8>) {
    let chunk_stream_id = message.chunk_stream_id.clamp(2, 63) as u8;
    let extended = message.timestamp >= 0xFF_FFFF;
    let field = if extended { 0xFF_FFFF } else { message.timestamp };
    out.push(chunk_stream_id);
    out.extend_from_slice(&field.to_be_bytes()[1..]);
    out.extend_from_slice(&(message.payload.len() as u32).to_be_bytes()[1..]);
    out.push(message.type_id);
    out.extend_from_slice(&message.stream_id.to_le_bytes());
    if extended {
        out.extend_from_slice(&message.timestamp.to_be_bytes());
    }
    for (index, piece) in message.payload.chunks(chunk_size.max(1)).enumerate() {
        if index > 0 {
            out.push(0xC0 | chunk_stream_id);
            if extended {
                out.extend_from_slice(&message.timestamp.to_be_bytes());
            }
        }
        out.extend_from_slice(piece);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn message(chunk_stream_id: u32, timestamp: u32, type_id: u8, length: usize) -> Message {
        Message {
            chunk_stream_id,
            timestamp,
            type_id,
            stream_id: 1,
            payload: (0..length).map(|i| (i % 251) as u8).collect(),
        }
    }

    fn decode_everything(decoder: &mut Decoder) -> Vec<Message> {
        let mut messages = Vec::new();
        while let Some(message) = decoder.next_message().unwrap() {
            messages.push(message);
        }
        messages
    }

    #[test]
    fn a_long_message_is_cut_into_chunks_and_joined_again_byte_by_byte() {
        let sent = message(6, 40, kind::VIDEO, 1000);
        let mut bytes = Vec::new();
        encode(&sent, 128, &mut bytes);
        // 1 + 11 header bytes, 7 continuation headers, 1000 bytes of payload.
        assert_eq!(bytes.len(), 12 + 7 + 1000);
        let mut decoder = Decoder::default();
        for byte in &bytes {
            decoder.extend(&[*byte]);
            if let Some(received) = decoder.next_message().unwrap() {
                assert_eq!(received, sent);
                assert_eq!(decoder.buffered(), 0);
                return;
            }
        }
        panic!("the message never came out");
    }

    #[test]
    fn compressed_headers_carry_deltas_and_repeat_the_last_one() {
        let mut bytes = Vec::new();
        // Format 0 at t=1000, 3 bytes of audio on chunk stream 4.
        bytes.extend_from_slice(&[0x04, 0x00, 0x03, 0xE8, 0x00, 0x00, 0x03, 0x08, 0x01, 0x00, 0x00, 0x00, 1, 2, 3]);
        // Format 1: delta 23, 2 bytes, video.
        bytes.extend_from_slice(&[0x44, 0x00, 0x00, 0x17, 0x00, 0x00, 0x02, 0x09, 4, 5]);
        // Format 2: delta 20, same length and type.
        bytes.extend_from_slice(&[0x84, 0x00, 0x00, 0x14, 6, 7]);
        // Format 3: a new message with everything repeated, the delta too.
        bytes.extend_from_slice(&[0xC4, 8, 9]);
        let mut decoder = Decoder::default();
        decoder.extend(&bytes);
        let messages = decode_everything(&mut decoder);
        let seen: Vec<(u32, u8, Vec<u8>)> =
            messages.iter().map(|m| (m.timestamp, m.type_id, m.payload.clone())).collect();
        assert_eq!(
            seen,
            vec![
                (1000, kind::AUDIO, vec![1, 2, 3]),
                (1023, kind::VIDEO, vec![4, 5]),
                (1043, kind::VIDEO, vec![6, 7]),
                (1063, kind::VIDEO, vec![8, 9]),
            ]
        );
        assert!(messages.iter().all(|m| m.stream_id == 1 && m.chunk_stream_id == 4));
    }

    #[test]
    fn interleaved_chunk_streams_each_assemble_their_own_message() {
        let audio = message(4, 0, kind::AUDIO, 200);
        let video = message(6, 0, kind::VIDEO, 300);
        let (mut audio_bytes, mut video_bytes) = (Vec::new(), Vec::new());
        encode(&audio, 128, &mut audio_bytes);
        encode(&video, 128, &mut video_bytes);
        // video chunk 1, audio chunk 1, video chunk 2, audio chunk 2, video chunk 3.
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&video_bytes[..140]);
        bytes.extend_from_slice(&audio_bytes[..140]);
        bytes.extend_from_slice(&video_bytes[140..269]);
        bytes.extend_from_slice(&audio_bytes[140..]);
        bytes.extend_from_slice(&video_bytes[269..]);
        let mut decoder = Decoder::default();
        decoder.extend(&bytes);
        assert_eq!(decode_everything(&mut decoder), vec![audio, video]);
    }

    #[test]
    fn a_larger_chunk_size_and_extended_timestamps_and_long_ids_decode() {
        let sent = Message {
            chunk_stream_id: 5,
            timestamp: 0x0100_0000,
            type_id: kind::VIDEO,
            stream_id: 1,
            payload: vec![7; 5000],
        };
        let mut bytes = Vec::new();
        encode(&sent, 4096, &mut bytes);
        let mut decoder = Decoder::default();
        decoder.set_chunk_size(4096).unwrap();
        decoder.extend(&bytes);
        assert_eq!(decode_everything(&mut decoder), vec![sent]);
        // Chunk stream 320, in the three-byte basic header.
        let mut decoder = Decoder::default();
        decoder.extend(&[0x01, 0x00, 0x01, 0, 0, 5, 0, 0, 1, 8, 1, 0, 0, 0, 42]);
        let messages = decode_everything(&mut decoder);
        assert_eq!(messages[0].chunk_stream_id, 320);
        assert_eq!(messages[0].timestamp, 5);
        assert_eq!(messages[0].payload, vec![42]);
    }

    #[test]
    fn hostile_chunks_are_errors() {
        let mut decoder = Decoder::default();
        decoder.extend(&[0xC7, 1, 2]);
        assert_eq!(decoder.next_message(), Err(ChunkError::NoPreviousHeader(7)));
        let mut decoder = Decoder::default();
        decoder.extend(&[0x04, 0, 0, 0, 0xFF, 0xFF, 0xFF, 9, 1, 0, 0, 0]);
        assert_eq!(decoder.next_message(), Err(ChunkError::MessageTooLarge(0xFF_FFFF)));
        assert_eq!(Decoder::default().set_chunk_size(0), Err(ChunkError::BadChunkSize(0)));
        let mut decoder = Decoder::default();
        decoder.set_chunk_size(2).unwrap();
        decoder.extend(&[0x04, 0, 0, 0, 0, 0, 4, 8, 1, 0, 0, 0, 1, 2]);
        decoder.extend(&[0x44, 0, 0, 0, 0, 0, 4, 8, 1, 2]);
        assert_eq!(decoder.next_message(), Err(ChunkError::InterruptedMessage(4)));
        let mut decoder = Decoder::default();
        // Chunk streams 64, 65, … in the two-byte basic header, one message each.
        for id in 0..=CHUNK_STREAMS_MAX as u8 {
            decoder.extend(&[0x00, id, 0, 0, 0, 0, 0, 1, 8, 1, 0, 0, 0, 0]);
        }
        let error = loop {
            match decoder.next_message() {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("no error"),
                Err(error) => break error,
            }
        };
        assert_eq!(error, ChunkError::TooManyChunkStreams);
    }
}
