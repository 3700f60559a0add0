//! The server side of RTMP against a scripted publisher that sends what ffmpeg sends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use tokio::io::DuplexStream;

/// The publisher's end: writes chunks at 128 bytes, reads the server's messages.
struct Publisher {
    stream: DuplexStream,
    decoder: Decoder,
}

impl Publisher {
    async fn handshake(stream: DuplexStream) -> Self {
        let mut publisher = Self { stream, decoder: Decoder::default() };
        let mut c0_c1 = vec![3u8];
        c0_c1.extend(std::iter::repeat_n(7u8, 1536));
        publisher.stream.write_all(&c0_c1).await.unwrap();
        let mut s0_s1_s2 = vec![0u8; 1 + 1536 * 2];
        publisher.stream.read_exact(&mut s0_s1_s2).await.unwrap();
        assert_eq!(&s0_s1_s2[1537..], &c0_c1[1..]);
        publisher.stream.write_all(&s0_s1_s2[1..1537]).await.unwrap();
        publisher
    }

    async fn send(&mut self, chunk_stream_id: u32, type_id: u8, stream_id: u32, timestamp: u32, payload: Vec<u8>) {
        let mut bytes = Vec::new();
        chunk::encode(&Message { chunk_stream_id, timestamp, type_id, stream_id, payload }, 128, &mut bytes);
        self.stream.write_all(&bytes).await.unwrap();
    }

    async fn command(&mut self, stream_id: u32, values: &[Value]) {
        self.send(3, kind::COMMAND_AMF0, stream_id, 0, amf0::encode_all(values)).await;
    }

    /// The next command the server sent, skipping control messages (and applying its
    /// chunk size).
    async fn next_command(&mut self) -> Vec<Value> {
        loop {
            if let Some(message) = self.decoder.next_message().unwrap() {
                match message.type_id {
                    kind::SET_CHUNK_SIZE => {
                        let size = u32::from_be_bytes(message.payload[..4].try_into().unwrap());
                        self.decoder.set_chunk_size(size).unwrap();
                    }
                    kind::COMMAND_AMF0 => return amf0::decode_all(&message.payload).unwrap(),
                    _ => {}
                }
                continue;
            }
            let mut buffer = [0u8; 4096];
            let count = self.stream.read(&mut buffer).await.unwrap();
            assert!(count > 0, "the server closed");
            self.decoder.extend(&buffer[..count]);
        }
    }

    /// connect, releaseStream, FCPublish, createStream and publish, as ffmpeg sends them.
    async fn ask_to_publish(&mut self, key: &str) {
        let connect = amf0::object(&[
            ("app", Value::String("live".into())),
            ("type", Value::String("nonprivate".into())),
            ("tcUrl", Value::String("rtmp://127.0.0.1/live".into())),
        ]);
        self.command(0, &[Value::String("connect".into()), Value::Number(1.0), connect]).await;
        let answer = self.next_command().await;
        assert_eq!(answer[0], Value::String("_result".into()));
        assert_eq!(answer[3].property("code").and_then(Value::as_str), Some("NetConnection.Connect.Success"));
        let name = Value::String(key.into());
        self.command(0, &[Value::String("releaseStream".into()), Value::Number(2.0), Value::Null, name.clone()]).await;
        self.command(0, &[Value::String("FCPublish".into()), Value::Number(3.0), Value::Null, name.clone()]).await;
        self.command(0, &[Value::String("createStream".into()), Value::Number(4.0), Value::Null]).await;
        let mut created = self.next_command().await;
        while created[1] != Value::Number(4.0) {
            created = self.next_command().await;
        }
        assert_eq!(created[3], Value::Number(1.0));
        let publish =
            [Value::String("publish".into()), Value::Number(5.0), Value::Null, name, Value::String("live".into())];
        self.command(1, &publish).await;
    }
}

fn pair() -> (Connection<DuplexStream>, DuplexStream) {
    let (server, client) = tokio::io::duplex(1 << 20);
    (Connection::new(server), client)
}

#[tokio::test]
async fn a_publisher_is_asked_for_its_key_before_any_media_and_then_streams() {
    let (mut server, client) = pair();
    let publisher = tokio::spawn(async move {
        let mut publisher = Publisher::handshake(client).await;
        publisher.ask_to_publish("thekey?token=x").await;
        let status = publisher.next_command().await;
        assert_eq!(status[0], Value::String("onStatus".into()));
        assert_eq!(status[3].property("code").and_then(Value::as_str), Some("NetStream.Publish.Start"));
        let mut metadata =
            amf0::encode_all(&[Value::String("@setDataFrame".into()), Value::String("onMetaData".into())]);
        metadata.extend(amf0::encode_all(&[amf0::object(&[("width", Value::Number(320.0))])]));
        publisher.send(4, kind::DATA_AMF0, 1, 0, metadata).await;
        publisher.send(6, kind::VIDEO, 1, 0, vec![0x17, 0x00, 1, 2, 3]).await;
        publisher.send(4, kind::AUDIO, 1, 0, vec![0xAF, 0x00, 0x12, 0x10]).await;
        publisher.send(6, kind::VIDEO, 1, 33, [0x27, 0x01].repeat(300)).await;
        publisher.command(1, &[Value::String("deleteStream".into()), Value::Number(6.0), Value::Null]).await;
        publisher
    });
    let publish = server.accept_publish().await.unwrap();
    assert_eq!(publish.app, "live");
    assert_eq!(publish.name, "thekey");
    server.answer_publish(&publish, Ok(())).await.unwrap();
    let mut media = Vec::new();
    while let Some(message) = server.next_media().await.unwrap() {
        media.push(message);
    }
    let kinds: Vec<(u8, u32, usize)> = media.iter().map(|m| (m.type_id, m.timestamp, m.payload.len())).collect();
    assert_eq!(kinds, vec![(18, 0, kinds[0].2), (9, 0, 5), (8, 0, 4), (9, 33, 600)]);
    let metadata = amf0::decode_all(&media[0].payload).unwrap();
    assert_eq!(metadata[0], Value::String("onMetaData".into()), "the @setDataFrame wrapper is dropped");
    publisher.await.unwrap();
}

#[tokio::test]
async fn a_refused_publisher_is_told_why_and_no_media_is_read() {
    let (mut server, client) = pair();
    let publisher = tokio::spawn(async move {
        let mut publisher = Publisher::handshake(client).await;
        publisher.ask_to_publish("wrong").await;
        let status = publisher.next_command().await;
        assert_eq!(status[3].property("level").and_then(Value::as_str), Some("error"));
        assert_eq!(status[3].property("code").and_then(Value::as_str), Some("NetStream.Publish.BadName"));
    });
    let publish = server.accept_publish().await.unwrap();
    server.answer_publish(&publish, Err("NetStream.Publish.BadName")).await.unwrap();
    assert!(matches!(server.next_media().await, Err(RtmpError::Protocol("not publishing"))));
    publisher.await.unwrap();
}

#[tokio::test]
async fn media_before_publish_is_a_protocol_error() {
    let (mut server, client) = pair();
    let publisher = tokio::spawn(async move {
        let mut publisher = Publisher::handshake(client).await;
        publisher.send(6, kind::VIDEO, 1, 0, vec![0x17, 0x00]).await;
        publisher
    });
    assert!(matches!(server.accept_publish().await, Err(RtmpError::Protocol("media before publish"))));
    drop(publisher.await.unwrap());
}

#[tokio::test]
async fn a_peer_that_hangs_up_mid_handshake_is_closed_not_an_error_to_log() {
    let (mut server, mut client) = pair();
    client.write_all(&[3, 0, 0]).await.unwrap();
    drop(client);
    assert!(matches!(server.accept_publish().await, Err(RtmpError::Closed)));
}
