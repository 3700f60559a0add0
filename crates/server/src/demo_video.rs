//! `plaza demo`'s short videos: a dozen clips by the demo users, drawn by ffmpeg from its
//! own test sources (nothing is downloaded or committed), with hashtags, one linking the
//! demo shop's coffee, and follows so the Following feed has something in it.
//! Idempotent: a video whose caption its author already has is not published again.
//! Publishing only queues each clip; the transcoder of the first `plaza serve` (or
//! `demo --serve`) makes them playable, as it would any upload. Without ffmpeg the
//! videos are skipped with a note, and everything else is seeded.

use plaza_accounts::{Accounts, User};
use plaza_shop::ShopHandle;
use plaza_video::VideoHandle;
use std::path::Path;

/// (author, caption, ffmpeg lavfi video source, seconds).
const CLIPS: &[(&str, &str, &str, u32)] = &[
    (
        "carol",
        "Morning brew at the trailhead with our Yunnan beans #coffee #hiking",
        "testsrc2=size=360x640:rate=25",
        6,
    ),
    ("bob", "Cellular automata, because why not #generative #art", "cellauto=s=360x640:rate=25:rule=110", 6),
    ("alice", "Colour bars for a calm Monday #design #calm", "smptehdbars=size=640x360:rate=25", 5),
    ("carol", "Ridge-line timelapse, rain or shine #hiking #outdoors", "mandelbrot=size=360x640:rate=25", 6),
    (
        "dave",
        "Game of life at sunset #generative #coding",
        "life=s=360x640:mold=10:rate=25:ratio=0.1:death_color=#C83232:life_color=#00ff00",
        6,
    ),
    ("alice", "Slow gradient, deep breath #calm #design", "gradients=s=360x640:rate=25:speed=0.02", 6),
    ("bob", "Rule 30 makes its own randomness #generative #maths", "cellauto=s=360x640:rate=25:rule=30", 5),
    (
        "carol",
        "Campfire colours after the climb #outdoors #hiking",
        "gradients=s=360x640:rate=25:c0=orange:c1=red:speed=0.05",
        5,
    ),
    ("dave", "A test pattern I keep coming back to #coding #design", "testsrc=size=640x360:rate=25", 5),
    ("alice", "Night-sky fractal zoom #maths #art", "mandelbrot=size=640x360:rate=25:start_scale=2", 6),
    ("bob", "Sixty seconds of nothing, shortened to five #calm", "color=c=teal:size=360x640:rate=25", 5),
    ("dave", "Life, but with more neighbours #generative #coding", "life=s=360x640:rate=25:rule=B36/S23:ratio=0.2", 5),
];

/// Who follows whom among the demo users.
const FOLLOWS: &[(&str, &str)] = &[("alice", "carol"), ("bob", "carol"), ("carol", "alice"), ("dave", "bob")];

pub async fn seed(
    accounts: &Accounts,
    video: &VideoHandle,
    shop: &ShopHandle,
    users: &[User],
    scratch: &Path,
) -> anyhow::Result<()> {
    let find = |name: &str| users.iter().find(|user| user.username == name);
    for (follower, followed) in FOLLOWS {
        if let (Some(follower), Some(followed)) = (find(follower), find(followed)) {
            accounts.follow(follower, &followed.id).await?;
        }
    }
    if std::process::Command::new("ffmpeg").arg("-version").output().is_err() {
        eprintln!("ffmpeg is not installed: the demo has no videos (apt-get install -y ffmpeg, then run demo again)");
        return Ok(());
    }
    let limit = plaza_kernel::PageLimit::parse(Some(200)).map_err(anyhow::Error::msg)?;
    let coffee = shop.products(Some("Yunnan coffee"), None, limit, None).await?.items.into_iter().next();
    std::fs::create_dir_all(scratch)?;
    for (index, (author, caption, source, seconds)) in CLIPS.iter().enumerate() {
        let Some(author) = find(author) else { continue };
        let existing = video.user_videos(author, &author.id, limit, None).await?.items;
        if existing.iter().any(|published| published.caption == *caption) {
            continue;
        }
        let file = scratch.join(format!("demo-{index}.mp4"));
        make_clip(source, *seconds, &file)?;
        let bytes = bytes::Bytes::from(std::fs::read(&file)?);
        std::fs::remove_file(&file).ok();
        let upload_id = video.create_upload(author, bytes.len() as i64).await?;
        let body = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes)]);
        video.append(author, &upload_id, 0, body).await?;
        let product = (index == 0).then(|| coffee.as_ref().map(|product| product.id.as_str())).flatten();
        video.publish(author, &upload_id, caption, product, "public").await?;
    }
    Ok(())
}

/// A short H.264/AAC clip from ffmpeg's own sources; every argument is fixed here.
fn make_clip(source: &str, seconds: u32, out: &Path) -> anyhow::Result<()> {
    let status = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-f", "lavfi", "-i", source, "-f", "lavfi", "-i", "sine=frequency=330", "-t"])
        .arg(seconds.to_string())
        .args(["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-y"])
        .arg(out)
        .status()?;
    anyhow::ensure!(status.success(), "ffmpeg could not draw a demo clip ({status})");
    Ok(())
}
