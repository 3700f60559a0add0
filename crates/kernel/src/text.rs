//! Rules for text people show each other (names, titles).

/// Whether `text` holds a Unicode bidirectional control: the embeddings, overrides and
/// isolates (U+202A–U+202E, U+2066–U+2069) and the implicit marks (U+200E, U+200F,
/// U+061C). They are invisible and reorder what follows them, so a name such as
/// `ann\u{202E}gnp.exe` displays as `annexe.png`; names and titles refuse them.
pub fn has_bidi_control(text: &str) -> bool {
    text.chars()
        .any(|c| matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_isolates_and_marks_are_found_and_ordinary_scripts_are_not() {
        for control in ['\u{202E}', '\u{202A}', '\u{2066}', '\u{2069}', '\u{200F}', '\u{061C}'] {
            assert!(has_bidi_control(&format!("ann{control}lee")), "{control:?}");
        }
        assert!(!has_bidi_control("Ann Lee"));
        assert!(!has_bidi_control("云南咖啡豆"));
        assert!(!has_bidi_control("مرحبا"), "right-to-left letters themselves are fine");
    }
}
