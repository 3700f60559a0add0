//! The video service's values, parsed once at the edge (parse, don't validate).

/// A caption: 1–2,200 characters after trimming, no control characters but line breaks.
/// Its `#hashtags` are the video's topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caption(String);

impl Caption {
    pub const MAX_CHARS: usize = 2_200;

    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err("a caption cannot be empty");
        }
        if trimmed.chars().count() > Self::MAX_CHARS {
            return Err("a caption has at most 2,200 characters");
        }
        if trimmed.chars().any(|c| c.is_control() && c != '\n') {
            return Err("a caption cannot contain control characters other than line breaks");
        }
        if plaza_kernel::text::has_bidi_control(trimmed) {
            return Err("a caption cannot contain right-to-left or left-to-right override characters");
        }
        Ok(Self(trimmed.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The distinct hashtags, lower-case, without `#`, in order of first use, at most
    /// [`HASHTAGS_MAX`]. A hashtag is `#` followed by letters, digits or `_` (any script,
    /// so `#咖啡` counts), at most 50 of them.
    pub fn hashtags(&self) -> Vec<String> {
        let mut tags: Vec<String> = Vec::new();
        let mut chars = self.0.chars().peekable();
        let mut previous: Option<char> = None;
        while let Some(c) = chars.next() {
            let starts_word = previous.is_none_or(|p| !(p.is_alphanumeric() || p == '_'));
            previous = Some(c);
            if c != '#' || !starts_word {
                continue;
            }
            let mut tag = String::new();
            while let Some(&next) = chars.peek() {
                if !(next.is_alphanumeric() || next == '_') {
                    break;
                }
                tag.extend(next.to_lowercase());
                previous = Some(next);
                chars.next();
            }
            let length = tag.chars().count();
            if length > 0 && length <= HASHTAG_MAX_CHARS && !tags.contains(&tag) && tags.len() < HASHTAGS_MAX {
                tags.push(tag);
            }
        }
        tags
    }
}

/// The most hashtags a video is indexed under.
pub const HASHTAGS_MAX: usize = 20;
/// The longest hashtag indexed.
pub const HASHTAG_MAX_CHARS: usize = 50;

/// Who may see a video: everyone signed in, the author's followers, or the author alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    Public,
    Followers,
    Private,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Followers => "followers",
            Self::Private => "private",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "public" => Some(Self::Public),
            "followers" => Some(Self::Followers),
            "private" => Some(Self::Private),
            _ => None,
        }
    }

    /// Whether a viewer sees it, given whether they wrote it and whether they follow
    /// its author. The one rule every read path applies.
    pub fn allows(self, is_author: bool, follows_author: bool) -> bool {
        match self {
            Self::Public => true,
            Self::Followers => is_author || follows_author,
            Self::Private => is_author,
        }
    }
}

/// Where a video's processing stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoStatus {
    Processing,
    Ready,
    Failed,
}

impl VideoStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Processing => "processing",
            Self::Ready => "ready",
            Self::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Self {
        match text {
            "ready" => Self::Ready,
            "failed" => Self::Failed,
            _ => Self::Processing,
        }
    }
}

/// A comment: 1–500 characters after trimming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentText(String);

impl CommentText {
    pub const MAX_CHARS: usize = 500;

    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err("a comment cannot be empty");
        }
        if trimmed.chars().count() > Self::MAX_CHARS {
            return Err("a comment has at most 500 characters");
        }
        if trimmed.chars().any(|c| c.is_control() && c != '\n') {
            return Err("a comment cannot contain control characters other than line breaks");
        }
        Ok(Self(trimmed.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn hashtags_are_lower_case_distinct_and_in_any_script() {
        let caption = Caption::parse("Morning #Coffee and #咖啡 #coffee, not a#tag, #under_score!").unwrap();
        assert_eq!(caption.hashtags(), vec!["coffee", "咖啡", "under_score"]);
    }

    #[test]
    fn a_caption_is_one_to_2200_characters() {
        assert!(Caption::parse("  ").is_err());
        assert!(Caption::parse(&"a".repeat(2_200)).is_ok());
        assert!(Caption::parse(&"a".repeat(2_201)).is_err());
    }

    #[test]
    fn visibility_holds_for_strangers_followers_and_the_author() {
        assert!(Visibility::Public.allows(false, false));
        assert!(!Visibility::Followers.allows(false, false));
        assert!(Visibility::Followers.allows(false, true));
        assert!(!Visibility::Private.allows(false, true));
        assert!(Visibility::Private.allows(true, false));
    }
}
