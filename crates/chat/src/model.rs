//! The chat vocabulary, each type built only by its `parse`.

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversationKind {
    Direct,
    Group,
}

impl ConversationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Group => "group",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "direct" => Some(Self::Direct),
            "group" => Some(Self::Group),
            _ => None,
        }
    }
}

/// What a message is. Clients send `text`, `image` and `card`; the server and other
/// services post `system`, `transfer` and `red_packet`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Text,
    Image,
    Card,
    System,
    Transfer,
    RedPacket,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Image => "image",
            Self::Card => "card",
            Self::System => "system",
            Self::Transfer => "transfer",
            Self::RedPacket => "red_packet",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "text" => Some(Self::Text),
            "image" => Some(Self::Image),
            "card" => Some(Self::Card),
            "system" => Some(Self::System),
            "transfer" => Some(Self::Transfer),
            "red_packet" => Some(Self::RedPacket),
            _ => None,
        }
    }

    /// Kinds a client may send itself; the rest are posted by services.
    pub fn client_may_send(self) -> bool {
        matches!(self, Self::Text | Self::Image | Self::Card)
    }
}

/// A client's idempotency key for a send: 1–64 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientId(String);

impl ClientId {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        if raw.is_empty() || raw.len() > Self::MAX_CHARS {
            return Err("client_id has 1 to 64 characters");
        }
        if !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("client_id uses printable ASCII characters without spaces");
        }
        Ok(Self(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Limits on what a message may carry.
pub const TEXT_MAX_CHARS: usize = 4000;
pub const CARD_MAX_BYTES: usize = 4096;
pub const TITLE_MAX_CHARS: usize = 64;

/// A checked message body, with the media it refers to (if any) still to be checked
/// against the store.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageBody {
    value: Value,
    media_id: Option<String>,
}

impl MessageBody {
    /// Checks `body` for a message of `kind` sent by a client. Errors name the field.
    pub fn parse(kind: MessageKind, body: &Value) -> Result<Self, (&'static str, String)> {
        let object = body.as_object().ok_or(("body", "body must be an object".to_string()))?;
        match kind {
            MessageKind::Text => {
                let text =
                    object.get("text").and_then(Value::as_str).ok_or(("body.text", "text is required".to_string()))?;
                let chars = text.chars().count();
                if text.trim().is_empty() {
                    return Err(("body.text", "text cannot be empty".to_string()));
                }
                if chars > TEXT_MAX_CHARS {
                    return Err(("body.text", format!("text has at most {TEXT_MAX_CHARS} characters, not {chars}")));
                }
                if object.len() != 1 {
                    return Err(("body", "a text body has only `text`".to_string()));
                }
                Ok(Self { value: serde_json::json!({ "text": text }), media_id: None })
            }
            MessageKind::Image => {
                let media_id = object
                    .get("media_id")
                    .and_then(Value::as_str)
                    .ok_or(("body.media_id", "media_id is required".to_string()))?;
                if media_id.is_empty() || media_id.len() > 64 {
                    return Err(("body.media_id", "not a media id".to_string()));
                }
                Ok(Self { value: serde_json::json!({ "media_id": media_id }), media_id: Some(media_id.to_string()) })
            }
            MessageKind::Card => {
                // The title and the rest come from the service that renders the card.
                for (field, max) in [("type", 32), ("id", 128)] {
                    let value = object.get(field).and_then(Value::as_str).unwrap_or("");
                    if value.trim().is_empty() || value.chars().count() > max {
                        let path = match field {
                            "type" => "body.type",
                            "id" => "body.id",
                            _ => "body.title",
                        };
                        return Err((path, format!("a card needs `{field}`, 1 to {max} characters")));
                    }
                }
                if body.to_string().len() > CARD_MAX_BYTES {
                    return Err(("body", format!("a card body has at most {CARD_MAX_BYTES} bytes")));
                }
                Ok(Self { value: body.clone(), media_id: None })
            }
            MessageKind::System | MessageKind::Transfer | MessageKind::RedPacket => {
                Err(("kind", format!("clients cannot send {} messages", kind.as_str())))
            }
        }
    }

    /// A body made by the server or another service; trusted.
    pub fn trusted(value: Value) -> Self {
        Self { value, media_id: None }
    }

    pub fn value(&self) -> &Value {
        &self.value
    }

    pub fn media_id(&self) -> Option<&str> {
        self.media_id.as_deref()
    }
}

/// A group title: 1–64 characters after trimming, no control characters.
pub fn parse_title(raw: &str) -> Result<String, &'static str> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err("a title cannot be empty");
    }
    if trimmed.chars().count() > TITLE_MAX_CHARS {
        return Err("a title has at most 64 characters");
    }
    if trimmed.chars().any(char::is_control) {
        return Err("a title cannot contain control characters");
    }
    if plaza_kernel::text::has_bidi_control(trimmed) {
        return Err("a title cannot contain right-to-left or left-to-right override characters");
    }
    Ok(trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_bodies_are_bounded_and_strict() {
        assert!(MessageBody::parse(MessageKind::Text, &json!({"text": "hi"})).is_ok());
        assert_eq!(MessageBody::parse(MessageKind::Text, &json!({"text": "   "})).map_err(|e| e.0), Err("body.text"));
        assert!(MessageBody::parse(MessageKind::Text, &json!({"text": "字".repeat(4000)})).is_ok());
        assert_eq!(
            MessageBody::parse(MessageKind::Text, &json!({"text": "a".repeat(4001)})).map_err(|e| e.0),
            Err("body.text")
        );
        assert_eq!(MessageBody::parse(MessageKind::Text, &json!("hi")).map_err(|e| e.0), Err("body"));
        assert_eq!(MessageBody::parse(MessageKind::Text, &json!({"text": "a", "x": 1})).map_err(|e| e.0), Err("body"));
    }

    #[test]
    fn cards_need_type_and_id_and_clients_cannot_send_service_kinds() {
        assert!(MessageBody::parse(MessageKind::Card, &json!({"type": "ride", "id": "r1"})).is_ok());
        assert_eq!(MessageBody::parse(MessageKind::Card, &json!({"type": "ride"})).map_err(|e| e.0), Err("body.id"));
        assert_eq!(MessageBody::parse(MessageKind::System, &json!({})).map_err(|e| e.0), Err("kind"));
        assert_eq!(MessageBody::parse(MessageKind::Transfer, &json!({})).map_err(|e| e.0), Err("kind"));
    }

    #[test]
    fn client_ids_are_short_and_printable() {
        assert!(ClientId::parse("c-1").is_ok());
        assert!(ClientId::parse("").is_err());
        assert!(ClientId::parse("has space").is_err());
        assert!(ClientId::parse(&"x".repeat(65)).is_err());
    }
}
