//! HLS playlists, written by Plaza rather than by ffmpeg: ffmpeg cuts segments per
//! ingest session, but a room outlives its sessions (a reconnect continues it), so the
//! room's numbering, its discontinuities and the end are Plaza's. Pure functions here;
//! `storage.rs` puts the text where every node serves it.

use std::fmt::Write;

/// One segment of a room, as `live_segments` keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub seq: i64,
    pub duration_ms: i64,
    /// The first segment of a session after another (a reconnect, a restarted ffmpeg):
    /// timestamps and codec parameters may change here.
    pub discontinuity: bool,
}

/// The file name of segment `seq`, relative to the playlist.
pub fn segment_name(seq: i64) -> String {
    format!("seg{seq}.ts")
}

/// The segment number in a file name the packager writes (`seg{n}.ts`), or `None` for
/// any other name, so that no path reaches the store that Plaza did not make.
pub fn parse_segment_name(name: &str) -> Option<i64> {
    let digits = name.strip_prefix("seg")?.strip_suffix(".ts")?;
    if digits.is_empty() || digits.len() > 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return None;
    }
    digits.parse().ok()
}

/// A media playlist of `segments` (ascending `seq`). `discontinuities_before` counts the
/// discontinuities in segments already slid out of a live window (RFC 8216 §4.3.3.3).
/// `ended` closes it with `EXT-X-ENDLIST`, which makes it the replay.
pub fn media_playlist(segments: &[Segment], discontinuities_before: i64, ended: bool) -> String {
    let target = segments.iter().map(|segment| (segment.duration_ms + 999) / 1000).max().unwrap_or(1).max(1);
    let first = segments.first().map_or(0, |segment| segment.seq);
    let mut text = String::with_capacity(64 + segments.len() * 32);
    text.push_str("#EXTM3U\n#EXT-X-VERSION:3\n");
    let _ = writeln!(text, "#EXT-X-TARGETDURATION:{target}");
    let _ = writeln!(text, "#EXT-X-MEDIA-SEQUENCE:{first}");
    if discontinuities_before > 0 {
        let _ = writeln!(text, "#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuities_before}");
    }
    if ended && discontinuities_before == 0 && first == 0 {
        text.push_str("#EXT-X-PLAYLIST-TYPE:VOD\n");
    }
    for (index, segment) in segments.iter().enumerate() {
        // A discontinuity before the playlist's first segment is already counted in the
        // discontinuity sequence.
        if segment.discontinuity && index > 0 {
            text.push_str("#EXT-X-DISCONTINUITY\n");
        }
        let _ = writeln!(text, "#EXTINF:{}.{:03},", segment.duration_ms / 1000, segment.duration_ms % 1000);
        text.push_str(&segment_name(segment.seq));
        text.push('\n');
    }
    if ended {
        text.push_str("#EXT-X-ENDLIST\n");
    }
    text
}

/// The live window: the last `window` segments of `all`, with the discontinuity count of
/// those before it.
pub fn live_playlist(all: &[Segment], window: usize) -> String {
    let start = all.len().saturating_sub(window.max(1));
    // The window's first segment carries no tag of its own, so a discontinuity there
    // counts as passed too: each segment's discontinuity number stays what it was.
    let before = all.iter().take(start + 1).filter(|segment| segment.discontinuity).count() as i64;
    media_playlist(&all[start..], before, false)
}

/// What an ffmpeg HLS playlist lists: each complete segment's file name and duration.
pub fn parse_ffmpeg_playlist(text: &str) -> Vec<(String, i64)> {
    let mut listed = Vec::new();
    let mut duration_ms = None;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("#EXTINF:") {
            let seconds = rest.split(',').next().unwrap_or("").trim();
            duration_ms =
                seconds.parse::<f64>().ok().filter(|s| s.is_finite() && *s >= 0.0).map(|s| (s * 1000.0).round() as i64);
        } else if !line.is_empty() && !line.starts_with('#') {
            if let Some(duration_ms) = duration_ms.take() {
                listed.push((line.to_string(), duration_ms));
            }
        }
    }
    listed
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn segment(seq: i64, discontinuity: bool) -> Segment {
        Segment { seq, duration_ms: 1001, discontinuity }
    }

    #[test]
    fn an_ended_playlist_lists_every_segment_and_the_end() {
        let text = media_playlist(&[segment(0, false), segment(1, false), segment(2, true)], 0, true);
        assert_eq!(
            text,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n\
             #EXT-X-PLAYLIST-TYPE:VOD\n#EXTINF:1.001,\nseg0.ts\n#EXTINF:1.001,\nseg1.ts\n\
             #EXT-X-DISCONTINUITY\n#EXTINF:1.001,\nseg2.ts\n#EXT-X-ENDLIST\n"
        );
    }

    #[test]
    fn the_live_window_slides_and_counts_the_discontinuities_it_passed() {
        let all: Vec<Segment> = (0..10).map(|seq| segment(seq, seq == 3 || seq == 8)).collect();
        let text = live_playlist(&all, 4);
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:6\n"), "{text}");
        assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"), "{text}");
        assert_eq!(text.matches("#EXT-X-DISCONTINUITY\n").count(), 1, "{text}");
        assert!(!text.contains("ENDLIST"));
        assert!(text.ends_with("seg9.ts\n"));
        // A window starting at a discontinuity counts it as passed and does not repeat it.
        let text = live_playlist(&all, 2);
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:8\n#EXT-X-DISCONTINUITY-SEQUENCE:2\n"), "{text}");
        assert!(!text.contains("#EXT-X-DISCONTINUITY\n"), "{text}");
        assert!(live_playlist(&[], 4).contains("#EXT-X-MEDIA-SEQUENCE:0\n"));
    }

    #[test]
    fn only_the_packagers_segment_names_parse() {
        assert_eq!(parse_segment_name("seg0.ts"), Some(0));
        assert_eq!(parse_segment_name("seg12.ts"), Some(12));
        for bad in ["seg.ts", "seg01.ts", "../seg1.ts", "seg1.ts/x", "seg1.m3u8", "segx.ts", "seg1234567890123.ts"] {
            assert_eq!(parse_segment_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn ffmpegs_playlist_is_read_as_names_and_durations() {
        let text = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n\
                    #EXTINF:1.000000,\nlocal0.ts\n#EXTINF:0.966667,\nlocal1.ts\n";
        assert_eq!(parse_ffmpeg_playlist(text), vec![("local0.ts".into(), 1000), ("local1.ts".into(), 967)]);
    }
}
