//! The accounts vocabulary. Each newtype can only be built by its `parse`, so a function
//! that takes a [`Username`] never has to check it again.

use plaza_kernel::Timestamp;

/// 3–32 characters of `[a-z0-9_]`, stored lower-case: usernames are unique regardless
/// of case, so `Ann` and `ann` are the same name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Username(String);

impl Username {
    pub const MIN_CHARS: usize = 3;
    pub const MAX_CHARS: usize = 32;

    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let lower = raw.to_ascii_lowercase();
        if lower.len() < Self::MIN_CHARS || lower.len() > Self::MAX_CHARS {
            return Err("a username has 3 to 32 characters");
        }
        if !lower.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
            return Err("a username uses only letters a-z, digits and underscores");
        }
        Ok(Self(lower))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A display name: 1–64 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err("a display name cannot be empty");
        }
        if trimmed.chars().count() > Self::MAX_CHARS {
            return Err("a display name has at most 64 characters");
        }
        if trimmed.chars().any(char::is_control) {
            return Err("a display name cannot contain control characters");
        }
        if plaza_kernel::text::has_bidi_control(trimmed) {
            return Err("a display name cannot contain right-to-left or left-to-right override characters");
        }
        Ok(Self(trimmed.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A profile's bio: at most 160 characters after trimming (empty clears it), no control
/// characters but line breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bio(String);

impl Bio {
    pub const MAX_CHARS: usize = 160;

    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let trimmed = raw.trim();
        if trimmed.chars().count() > Self::MAX_CHARS {
            return Err("a bio has at most 160 characters");
        }
        if trimmed.chars().any(|c| c.is_control() && c != '\n') {
            return Err("a bio cannot contain control characters other than line breaks");
        }
        if plaza_kernel::text::has_bidi_control(trimmed) {
            return Err("a bio cannot contain right-to-left or left-to-right override characters");
        }
        Ok(Self(trimmed.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password as typed: at least 8 characters, at most 1,024 bytes (bounding hashing work).
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub const MIN_CHARS: usize = 8;
    pub const MAX_BYTES: usize = 1024;

    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        if raw.chars().count() < Self::MIN_CHARS {
            return Err("a password has at least 8 characters");
        }
        if raw.len() > Self::MAX_BYTES {
            return Err("a password has at most 1024 bytes");
        }
        Ok(Self(raw.to_string()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

/// A user's public profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub avatar_url: Option<String>,
    pub created_at: Timestamp,
    /// What the user says about themselves; empty when unset.
    pub bio: String,
    pub followers_count: i64,
    pub following_count: i64,
}

/// What an account may do beyond a user's own things. Roles are rows in the database,
/// granted by an operator (`plaza admin grant`), never by a username alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Operates the deployment: the ledger check and other `/admin` endpoints.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
        }
    }
}

/// Where a contact relationship stands, seen from one side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactStatus {
    /// I asked; they have not answered.
    Outgoing,
    /// They asked; I have not answered.
    Incoming,
    /// We are contacts.
    Accepted,
}

impl ContactStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Outgoing => "outgoing",
            Self::Incoming => "incoming",
            Self::Accepted => "accepted",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "outgoing" => Some(Self::Outgoing),
            "incoming" => Some(Self::Incoming),
            "accepted" => Some(Self::Accepted),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_lower_cased_and_restricted() {
        assert_eq!(Username::parse("Ann_99").map(|u| u.as_str().to_string()), Ok("ann_99".into()));
        assert!(Username::parse("ab").is_err());
        assert!(Username::parse(&"a".repeat(33)).is_err());
        assert!(Username::parse("ann-lee").is_err());
        assert!(Username::parse("änn").is_err());
    }

    #[test]
    fn display_names_are_trimmed_and_bounded() {
        assert_eq!(DisplayName::parse("  Ann Lee ").map(|d| d.as_str().to_string()), Ok("Ann Lee".into()));
        assert!(DisplayName::parse("   ").is_err());
        assert!(DisplayName::parse(&"字".repeat(64)).is_ok());
        assert!(DisplayName::parse(&"字".repeat(65)).is_err());
        assert!(DisplayName::parse("a\u{0007}b").is_err());
        assert!(DisplayName::parse("ann\u{202E}gnp.exe").is_err());
    }

    #[test]
    fn passwords_have_a_floor_and_a_ceiling_and_never_print() {
        assert!(Password::parse("short").is_err());
        assert!(Password::parse("long enough").is_ok());
        assert!(Password::parse(&"x".repeat(1025)).is_err());
        assert_eq!(format!("{:?}", Password::parse("secret-password")), "Ok(Password(***))");
    }
}
