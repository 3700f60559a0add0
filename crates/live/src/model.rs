//! The live service's parsed types: a room's title, its status and its stream key.

use sha2::{Digest, Sha256};

/// The longest room title, in characters.
pub const TITLE_CHARS_MAX: usize = 100;
/// The most products one room may show.
pub const ROOM_PRODUCTS_MAX: usize = 50;

/// A room title: 1–100 characters after trimming, no control or bidirectional-override
/// characters (it is shown over the video to every viewer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Title(String);

impl Title {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let chars = text.chars().count();
        if chars == 0 || chars > TITLE_CHARS_MAX {
            return Err(format!("1 to {TITLE_CHARS_MAX} characters"));
        }
        if text.chars().any(char::is_control) || plaza_kernel::text::has_bidi_control(text) {
            return Err("no control or bidirectional-override characters".into());
        }
        Ok(Self(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The longest live chat message, in characters.
pub const CHAT_CHARS_MAX: usize = 200;

/// A live chat message's text: 1–200 characters after trimming, no control or
/// bidirectional-override characters (it is drawn over the video, one line each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatText(String);

impl ChatText {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let chars = text.chars().count();
        if chars == 0 || chars > CHAT_CHARS_MAX {
            return Err(format!("1 to {CHAT_CHARS_MAX} characters"));
        }
        if text.chars().any(char::is_control) || plaza_kernel::text::has_bidi_control(text) {
            return Err("no control or bidirectional-override characters".into());
        }
        Ok(Self(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where a room is in its life: `created → live → ended` (or `created → ended`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomStatus {
    /// Made, with a stream key; no media has been packaged yet.
    Created,
    /// Its first segment is playable; it stays live through a reconnect shorter than
    /// the idle time.
    Live,
    /// Ended by its host or by silence; its recording is the replay.
    Ended,
}

impl RoomStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Live => "live",
            Self::Ended => "ended",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "created" => Some(Self::Created),
            "live" => Some(Self::Live),
            "ended" => Some(Self::Ended),
            _ => None,
        }
    }
}

/// A stream key: 32 random bytes as hex, shown to the host only (at creation and at each
/// rotation); the database keeps its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamKey(String);

impl StreamKey {
    /// A new key from the OS random source.
    pub fn generate() -> Self {
        Self(plaza_kernel::id::to_hex(&plaza_kernel::random_token_bytes::<32>()))
    }

    /// A key as a publisher sent it; `None` for anything that cannot be one of ours, so
    /// that no odd text reaches a query or a log line.
    pub fn parse(text: &str) -> Option<Self> {
        (text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
            .then(|| Self(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What the database stores and looks keys up by.
    pub fn digest(&self) -> String {
        plaza_kernel::id::to_hex(&Sha256::digest(self.0.as_bytes()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_trimmed_and_bounded() {
        assert_eq!(Title::parse("  Spring sale ").map(|t| t.as_str().to_string()), Ok("Spring sale".into()));
        assert!(Title::parse("   ").is_err());
        assert!(Title::parse(&"x".repeat(101)).is_err());
        assert!(Title::parse(&"直".repeat(100)).is_ok());
        assert!(Title::parse("a\u{202e}b").is_err());
        assert!(Title::parse("a\nb").is_err());
    }

    #[test]
    fn chat_is_trimmed_and_bounded_in_characters() {
        assert_eq!(ChatText::parse("  hi  ").map(|t| t.as_str().to_string()), Ok("hi".into()));
        assert!(ChatText::parse(" \t ").is_err());
        assert!(ChatText::parse(&"好".repeat(200)).is_ok());
        assert!(ChatText::parse(&"x".repeat(201)).is_err());
        assert!(ChatText::parse("a\nb").is_err());
        assert!(ChatText::parse("a\u{202e}b").is_err());
    }

    #[test]
    fn only_keys_plaza_makes_parse() {
        let key = StreamKey::generate();
        assert_eq!(StreamKey::parse(key.as_str()), Some(key.clone()));
        assert_eq!(key.digest().len(), 64);
        assert_ne!(key.digest(), key.as_str());
        assert_eq!(StreamKey::parse(&key.as_str().to_uppercase()), None);
        assert_eq!(StreamKey::parse("short"), None);
        assert_eq!(StreamKey::parse(&"g".repeat(64)), None);
    }
}
