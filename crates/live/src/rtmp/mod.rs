//! The publish side of RTMP, enough for OBS and ffmpeg to stream into Plaza: the
//! handshake, the chunk stream, and the AMF0 commands `connect`, `releaseStream`,
//! `FCPublish`, `createStream` and `publish`. [`Connection::accept_publish`] returns the
//! stream name the publisher asked for (the stream key) *before* any media is read; the
//! caller decides, answers with [`Connection::answer_publish`], and only an accepted
//! publisher's audio and video messages are then read, by [`Connection::next_media`].
//! Playing, AMF3 objects and RTMPE/RTMPS are not spoken.

pub mod amf0;
pub mod chunk;
pub mod flv;
pub mod handshake;

use amf0::Value;
use chunk::{kind, Decoder, Message};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The chunk size Plaza sends with (the default 128 would cut every answer in pieces).
const OUT_CHUNK_SIZE: usize = 4096;
/// The acknowledgement window and peer bandwidth Plaza announces.
const WINDOW_BYTES: u32 = 2_500_000;
/// Commands a publisher may send before `publish`; more is not a publisher.
const COMMANDS_BEFORE_PUBLISH_MAX: usize = 32;
/// The message stream `createStream` hands out.
const STREAM_ID: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum RtmpError {
    #[error("handshake: {0}")]
    Handshake(#[from] handshake::HandshakeError),
    #[error("chunk stream: {0}")]
    Chunk(#[from] chunk::ChunkError),
    #[error("command: {0}")]
    Amf0(#[from] amf0::Amf0Error),
    #[error("the publisher broke the protocol: {0}")]
    Protocol(&'static str),
    #[error("the connection closed")]
    Closed,
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
}

/// What a publisher asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Publish {
    /// The application in `connect` (`live` in `rtmp://host/live/KEY`).
    pub app: String,
    /// The stream name in `publish`, with any `?query` cut off: the stream key.
    pub name: String,
    transaction: f64,
}

/// A media message of an accepted publisher, ready to be an FLV tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// 8 audio, 9 video, 18 script data (`onMetaData`, without `@setDataFrame`).
    pub type_id: u8,
    pub timestamp: u32,
    pub payload: Vec<u8>,
}

/// One publisher's connection.
pub struct Connection<S> {
    stream: S,
    decoder: Decoder,
    read_buffer: Vec<u8>,
    received_bytes: u64,
    acknowledged_bytes: u64,
    /// The window the peer asked to be acknowledged at (0 until it says).
    peer_window: u64,
    publishing: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    pub fn new(stream: S) -> Self {
        Self {
            stream,
            decoder: Decoder::default(),
            read_buffer: vec![0; 64 * 1024],
            received_bytes: 0,
            acknowledged_bytes: 0,
            peer_window: 0,
            publishing: false,
        }
    }

    /// The handshake and the commands up to `publish`; what was asked. No media is
    /// accepted before: a media message now is a protocol error.
    pub async fn accept_publish(&mut self) -> Result<Publish, RtmpError> {
        let mut c0_c1 = vec![0u8; handshake::C0_C1_BYTES];
        self.stream.read_exact(&mut c0_c1).await.map_err(closed)?;
        self.stream.write_all(&handshake::respond(&c0_c1)?).await?;
        let mut c2 = vec![0u8; handshake::C2_BYTES];
        self.stream.read_exact(&mut c2).await.map_err(closed)?;
        let mut app = None;
        for _ in 0..COMMANDS_BEFORE_PUBLISH_MAX {
            let message = self.next_message().await?.ok_or(RtmpError::Closed)?;
            match message.type_id {
                kind::COMMAND_AMF0 | kind::COMMAND_AMF3 => {}
                kind::AUDIO | kind::VIDEO | kind::DATA_AMF0 | kind::DATA_AMF3 => {
                    return Err(RtmpError::Protocol("media before publish"))
                }
                _ => continue,
            }
            let values = command_values(&message)?;
            let name = values.first().and_then(Value::as_str).unwrap_or("");
            let transaction = values.get(1).and_then(Value::as_number).unwrap_or(0.0);
            match name {
                "connect" => {
                    let asked = values.get(2).and_then(|object| object.property("app")).and_then(Value::as_str);
                    app = Some(asked.unwrap_or("").trim_end_matches('/').to_string());
                    self.answer_connect(transaction).await?;
                }
                "releaseStream" | "FCPublish" if transaction > 0.0 => {
                    self.send_command(
                        3,
                        0,
                        &[Value::String("_result".into()), Value::Number(transaction), Value::Null],
                    )
                    .await?;
                }
                "createStream" => {
                    let answer = [
                        Value::String("_result".into()),
                        Value::Number(transaction),
                        Value::Null,
                        Value::Number(f64::from(STREAM_ID)),
                    ];
                    self.send_command(3, 0, &answer).await?;
                }
                "publish" => {
                    let app = app.ok_or(RtmpError::Protocol("publish before connect"))?;
                    let asked = values.get(3).and_then(Value::as_str).unwrap_or("");
                    let name = asked.split('?').next().unwrap_or("").to_string();
                    return Ok(Publish { app, name, transaction });
                }
                _ => {}
            }
        }
        Err(RtmpError::Protocol("too many commands before publish"))
    }

    /// Tells the publisher whether it may publish: `Ok` starts the stream, `Err(code)`
    /// sends that `NetStream.Publish.*` error; the caller then closes the connection.
    pub async fn answer_publish(
        &mut self,
        publish: &Publish,
        answer: Result<(), &'static str>,
    ) -> Result<(), RtmpError> {
        let (level, code, description) = match answer {
            Ok(()) => ("status", "NetStream.Publish.Start", "Publishing."),
            Err(code) => ("error", code, "Publishing refused."),
        };
        if answer.is_ok() {
            // User control: Stream Begin on the created stream.
            let mut event = vec![0, 0];
            event.extend_from_slice(&STREAM_ID.to_be_bytes());
            self.send(Message {
                chunk_stream_id: 2,
                timestamp: 0,
                type_id: kind::USER_CONTROL,
                stream_id: 0,
                payload: event,
            })
            .await?;
        }
        let info = amf0::object(&[
            ("level", Value::String(level.into())),
            ("code", Value::String(code.into())),
            ("description", Value::String(description.into())),
        ]);
        let status = [Value::String("onStatus".into()), Value::Number(publish.transaction), Value::Null, info];
        self.send_command(5, STREAM_ID, &status).await?;
        self.stream.flush().await?;
        self.publishing = answer.is_ok();
        Ok(())
    }

    /// The next audio, video or data message, or `None` when the publisher stops
    /// (`FCUnpublish`, `deleteStream`, or the connection closing).
    pub async fn next_media(&mut self) -> Result<Option<Media>, RtmpError> {
        if !self.publishing {
            return Err(RtmpError::Protocol("not publishing"));
        }
        loop {
            let Some(message) = self.next_message().await? else { return Ok(None) };
            match message.type_id {
                kind::AUDIO | kind::VIDEO => {
                    return Ok(Some(Media {
                        type_id: message.type_id,
                        timestamp: message.timestamp,
                        payload: message.payload,
                    }))
                }
                kind::DATA_AMF0 => {
                    return Ok(Some(Media {
                        type_id: kind::DATA_AMF0,
                        timestamp: message.timestamp,
                        payload: without_set_data_frame(message.payload),
                    }))
                }
                kind::COMMAND_AMF0 | kind::COMMAND_AMF3 => {
                    let values = command_values(&message)?;
                    if matches!(
                        values.first().and_then(Value::as_str),
                        Some("FCUnpublish" | "deleteStream" | "closeStream")
                    ) {
                        return Ok(None);
                    }
                }
                _ => {}
            }
        }
    }

    /// The next message, with protocol control applied; `None` at a clean end of stream.
    async fn next_message(&mut self) -> Result<Option<Message>, RtmpError> {
        loop {
            if let Some(message) = self.decoder.next_message()? {
                if self.control(&message)? {
                    continue;
                }
                return Ok(Some(message));
            }
            let count = self.stream.read(&mut self.read_buffer).await?;
            if count == 0 {
                return Ok(None);
            }
            self.decoder.extend(&self.read_buffer[..count]);
            self.received_bytes += count as u64;
            if self.peer_window > 0 && self.received_bytes - self.acknowledged_bytes >= self.peer_window {
                self.acknowledged_bytes = self.received_bytes;
                let sequence = (self.received_bytes as u32).to_be_bytes().to_vec();
                self.send(Message {
                    chunk_stream_id: 2,
                    timestamp: 0,
                    type_id: kind::ACKNOWLEDGEMENT,
                    stream_id: 0,
                    payload: sequence,
                })
                .await?;
            }
        }
    }

    /// Applies a protocol control message; whether it was one.
    fn control(&mut self, message: &Message) -> Result<bool, RtmpError> {
        let number = || {
            message
                .payload
                .get(..4)
                .map(|bytes| u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
                .ok_or(RtmpError::Protocol("a control message shorter than 4 bytes"))
        };
        match message.type_id {
            kind::SET_CHUNK_SIZE => self.decoder.set_chunk_size(number()?)?,
            kind::ABORT => self.decoder.abort(number()?),
            kind::WINDOW_ACK_SIZE => self.peer_window = u64::from(number()?),
            kind::ACKNOWLEDGEMENT | kind::USER_CONTROL | kind::SET_PEER_BANDWIDTH => {}
            _ => return Ok(false),
        }
        Ok(true)
    }

    async fn answer_connect(&mut self, transaction: f64) -> Result<(), RtmpError> {
        let control =
            |type_id, payload: Vec<u8>| Message { chunk_stream_id: 2, timestamp: 0, type_id, stream_id: 0, payload };
        self.send(control(kind::WINDOW_ACK_SIZE, WINDOW_BYTES.to_be_bytes().to_vec())).await?;
        let mut bandwidth = WINDOW_BYTES.to_be_bytes().to_vec();
        bandwidth.push(2);
        self.send(control(kind::SET_PEER_BANDWIDTH, bandwidth)).await?;
        self.send(control(kind::SET_CHUNK_SIZE, (OUT_CHUNK_SIZE as u32).to_be_bytes().to_vec())).await?;
        let properties =
            amf0::object(&[("fmsVer", Value::String("FMS/3,0,1,123".into())), ("capabilities", Value::Number(31.0))]);
        let information = amf0::object(&[
            ("level", Value::String("status".into())),
            ("code", Value::String("NetConnection.Connect.Success".into())),
            ("description", Value::String("Connection succeeded.".into())),
            ("objectEncoding", Value::Number(0.0)),
        ]);
        self.send_command(3, 0, &[Value::String("_result".into()), Value::Number(transaction), properties, information])
            .await
    }

    async fn send_command(&mut self, chunk_stream_id: u32, stream_id: u32, values: &[Value]) -> Result<(), RtmpError> {
        let payload = amf0::encode_all(values);
        self.send(Message { chunk_stream_id, timestamp: 0, type_id: kind::COMMAND_AMF0, stream_id, payload }).await
    }

    async fn send(&mut self, message: Message) -> Result<(), RtmpError> {
        let mut bytes = Vec::with_capacity(message.payload.len() + 16);
        // Set Chunk Size itself goes out at the old size; everything after at the new.
        let size =
            if message.type_id == kind::SET_CHUNK_SIZE { chunk::DEFAULT_CHUNK_SIZE } else { self.out_chunk_size() };
        chunk::encode(&message, size, &mut bytes);
        self.stream.write_all(&bytes).await?;
        Ok(())
    }

    fn out_chunk_size(&self) -> usize {
        OUT_CHUNK_SIZE
    }
}

fn closed(error: std::io::Error) -> RtmpError {
    if error.kind() == std::io::ErrorKind::UnexpectedEof {
        RtmpError::Closed
    } else {
        RtmpError::Io(error)
    }
}

/// A command's values; an AMF3 command is AMF0 after one format byte.
fn command_values(message: &Message) -> Result<Vec<Value>, RtmpError> {
    let body =
        if message.type_id == kind::COMMAND_AMF3 { message.payload.get(1..).unwrap_or(&[]) } else { &message.payload };
    Ok(amf0::decode_all(body)?)
}

/// `@setDataFrame` is how a publisher says "store this as the stream's metadata"; in a
/// file the tag is the `onMetaData` that follows it.
fn without_set_data_frame(payload: Vec<u8>) -> Vec<u8> {
    const PREFIX: &[u8] = b"\x02\x00\x0d@setDataFrame";
    match payload.strip_prefix(PREFIX) {
        Some(rest) => rest.to_vec(),
        None => payload,
    }
}

#[cfg(test)]
mod tests;
