//! `plaza demo --serve`'s live room: carol's "Live from the trail" shows her shop's
//! products, the first one pinned, while a generated test pattern (ffmpeg's `testsrc`, with its running clock,
//! and a tone) streams into it through the real RTMP ingest, so a newcomer sees a room
//! live at once. Each start ends the previous demo room (its key is not kept) and opens a
//! new one; the publisher is niced, restarted if it stops, and killed with the node.

use plaza_live::{LiveHandle, RoomList};
use std::process::Stdio;
use std::time::Duration;

const TITLE: &str = "Live from the trail";
/// How long to wait before starting the test pattern again after it stopped.
const RESTART_AFTER: Duration = Duration::from_secs(3);

/// Runs the demo room for as long as the node does; returns at once when there is no
/// carol (the demo was not seeded) or this node ingests no RTMP.
pub async fn run(live: LiveHandle, accounts: plaza_accounts::Accounts, shop: plaza_shop::ShopHandle) {
    match open_room(&live, &accounts, &shop).await {
        Ok(Some(url)) => publish_for_ever(&url).await,
        Ok(None) => {}
        Err(error) => tracing::warn!("the demo live room could not open: {error}"),
    }
}

/// Ends carol's earlier demo rooms and opens a new one with her products; its RTMP URL.
async fn open_room(
    live: &LiveHandle,
    accounts: &plaza_accounts::Accounts,
    shop: &plaza_shop::ShopHandle,
) -> anyhow::Result<Option<String>> {
    if live.rtmp_base_url().is_none() || live.config().rtmp_addr.is_none() {
        return Ok(None);
    }
    let Ok(carol) = accounts.user_by_username("carol").await else { return Ok(None) };
    let limit = plaza_kernel::PageLimit::parse(Some(200)).map_err(anyhow::Error::msg)?;
    for list in [RoomList::Live, RoomList::MineCreated] {
        for room in live.rooms(&carol, list, limit, None).await?.items {
            if room.host.id == carol.id && room.title == TITLE {
                live.end_room(&carol, &room.id).await?;
            }
        }
    }
    let product_ids = match shop.my_shop(&carol).await {
        Ok(own) => shop.products(None, Some(&own.id), limit, None).await?.items.into_iter().map(|p| p.id).collect(),
        Err(_) => Vec::new(),
    };
    let created = live.create_room(&carol, TITLE, &product_ids, None).await?;
    // The first product is held up to the camera: a newcomer sees the Buy card at once.
    if let Some(first) = product_ids.first() {
        live.pin_product(&carol, &created.room.id, Some(first)).await?;
    }
    tracing::info!(room = %created.room.id, "the demo live room is streaming a test pattern");
    Ok(created.rtmp_url)
}

/// ffmpeg publishing a 640x360 test pattern and a tone to `url`, again whenever it stops.
async fn publish_for_ever(url: &str) {
    loop {
        let child = tokio::process::Command::new("nice")
            .args(["-n", "15", "ffmpeg", "-hide_banner", "-nostats", "-loglevel", "error", "-re"])
            .args(["-f", "lavfi", "-i", "testsrc=size=640x360:rate=30", "-f", "lavfi", "-i", "sine=frequency=440"])
            .args(crate::demo::LIVE_PUBLISH_CODECS)
            .args(["-f", "flv", url])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn();
        match child {
            Ok(mut child) => match child.wait().await {
                Ok(status) => tracing::warn!("the demo live room's test pattern stopped ({status}); starting it again"),
                Err(error) => tracing::warn!("the demo live room's test pattern: {error}"),
            },
            Err(error) => {
                tracing::warn!("the demo live room needs ffmpeg: {error}");
                return;
            }
        }
        tokio::time::sleep(RESTART_AFTER).await;
    }
}
