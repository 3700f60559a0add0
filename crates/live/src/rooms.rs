//! Rooms: creating one with the host's products, reading and listing them, rotating the
//! stream key and ending. Every status change is one conditional update on the old
//! status, so a host's end, the idle end and an ingest racing each other decide once.

use crate::model::{RoomStatus, StreamKey, Title, ROOM_PRODUCTS_MAX};
use crate::service::{invalid, LiveError, LiveHandle, Room, RoomWithKey};
use plaza_accounts::User;
use plaza_kernel::{Cursor, Page, PageLimit, Timestamp};
use plaza_shop::ShopError;
use plaza_store::{AnyRow, Row};
use std::collections::HashMap;

/// Which rooms a list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomList {
    /// Live now, most viewers first.
    Live,
    /// Ended (the replays), most recently ended first.
    Ended,
    /// The caller's own rooms not yet live, newest first.
    MineCreated,
}

const ROOM_COLUMNS: &str = "id, host_id, title, cover_media_id, status, viewers, likes, pinned_product_id, \
    created_at, started_at, ended_at, deal_flash_sale_id, deal_ends_at, \
    (SELECT COUNT(*) FROM live_segments s WHERE s.room_id = live_rooms.id) AS segments";

/// A `live_rooms` row before its host and products are joined in.
#[derive(Debug, Clone)]
pub(crate) struct RoomRow {
    pub(crate) id: String,
    pub(crate) host_id: String,
    pub(crate) title: String,
    pub(crate) cover_media_id: Option<String>,
    pub(crate) status: RoomStatus,
    pub(crate) viewers: i64,
    pub(crate) likes: i64,
    pub(crate) pinned_product_id: Option<String>,
    pub(crate) segments: i64,
    pub(crate) created_at: Timestamp,
    pub(crate) started_at: Option<Timestamp>,
    pub(crate) ended_at: Option<Timestamp>,
    /// The room's latest deal (or a claim of its slot, without a sale yet) and its end.
    pub(crate) deal_flash_sale_id: Option<String>,
    pub(crate) deal_ends_at: Option<Timestamp>,
}

fn room_row(row: &AnyRow) -> Result<RoomRow, sqlx::Error> {
    let status: String = row.try_get("status")?;
    let millis = |name: &str| row.try_get::<Option<i64>, _>(name).map(|at| at.map(Timestamp::from_unix_millis));
    Ok(RoomRow {
        id: row.try_get("id")?,
        host_id: row.try_get("host_id")?,
        title: row.try_get("title")?,
        cover_media_id: row.try_get("cover_media_id")?,
        status: RoomStatus::parse(&status).unwrap_or(RoomStatus::Ended),
        viewers: row.try_get("viewers")?,
        likes: row.try_get("likes")?,
        pinned_product_id: row.try_get("pinned_product_id")?,
        segments: row.try_get("segments")?,
        created_at: Timestamp::from_unix_millis(row.try_get("created_at")?),
        started_at: millis("started_at")?,
        ended_at: millis("ended_at")?,
        deal_flash_sale_id: row.try_get("deal_flash_sale_id")?,
        deal_ends_at: millis("deal_ends_at")?,
    })
}

impl LiveHandle {
    /// Creates a room for `host` with products of the host's own shop, in the order given.
    pub async fn create_room(
        &self,
        host: &User,
        title: &str,
        product_ids: &[String],
        cover_media_id: Option<&str>,
    ) -> Result<RoomWithKey, LiveError> {
        let title = Title::parse(title).map_err(|reason| invalid("title", reason))?;
        let product_ids = self.check_products(host, product_ids).await?;
        if let Some(cover) = cover_media_id {
            if cover.is_empty() || cover.len() > 64 || !cover.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(invalid("cover_media_id", "not a media id"));
            }
            // Viewers see the cover in the list of rooms, so it is published (and kept)
            // first; only the host's own upload may be a cover.
            match self.inner.media.publish_cover(&host.id, cover).await {
                Ok(()) => {}
                Err(plaza_media::MediaError::NotOwned { .. } | plaza_media::MediaError::NotFound) => {
                    return Err(invalid("cover_media_id", "not an image you uploaded"));
                }
                Err(error) => return Err(LiveError::Media(error.to_string())),
            }
        }
        let key = StreamKey::generate();
        let id = plaza_kernel::new_id();
        let mut transaction = self.inner.store.begin().await?;
        sqlx::query(
            "INSERT INTO live_rooms (id, host_id, title, cover_media_id, status, stream_key_digest, created_at)
             VALUES ($1, $2, $3, $4, 'created', $5, $6)",
        )
        .bind(&id)
        .bind(&host.id)
        .bind(title.as_str())
        .bind(cover_media_id)
        .bind(key.digest())
        .bind(Timestamp::now().unix_millis())
        .execute(&mut *transaction)
        .await?;
        for (position, product_id) in product_ids.iter().enumerate() {
            sqlx::query("INSERT INTO live_room_products (room_id, product_id, position) VALUES ($1, $2, $3)")
                .bind(&id)
                .bind(product_id)
                .bind(position as i64)
                .execute(&mut *transaction)
                .await?;
        }
        transaction.commit().await?;
        let room = self.room(Some(host), &id).await?;
        Ok(self.with_key(room, key))
    }

    /// The products a host may show: each exists, is on sale and is the host's shop's.
    async fn check_products(&self, host: &User, product_ids: &[String]) -> Result<Vec<String>, LiveError> {
        if product_ids.len() > ROOM_PRODUCTS_MAX {
            return Err(invalid("product_ids", format!("at most {ROOM_PRODUCTS_MAX} products")));
        }
        let mut unique = Vec::with_capacity(product_ids.len());
        for product_id in product_ids {
            if !unique.contains(product_id) {
                unique.push(product_id.clone());
            }
        }
        if unique.is_empty() {
            return Ok(unique);
        }
        let shop_id = match self.inner.shop.my_shop(host).await {
            Ok(shop) => Some(shop.id),
            Err(ShopError::ShopNotFound) => None,
            Err(error) => return Err(LiveError::Shop(error)),
        };
        for product_id in &unique {
            let product = match self.inner.shop.product(product_id).await {
                Ok(product) if !product.archived => product,
                Ok(_) | Err(ShopError::ProductNotFound) => {
                    return Err(LiveError::ProductNotFound { product_id: product_id.clone() })
                }
                Err(error) => return Err(LiveError::Shop(error)),
            };
            if shop_id.as_deref() != Some(product.shop_id.as_str()) {
                return Err(LiveError::ProductNotInShop { product_id: product_id.clone() });
            }
        }
        Ok(unique)
    }

    fn with_key(&self, room: Room, stream_key: StreamKey) -> RoomWithKey {
        let rtmp_url = self.rtmp_base_url().map(|base| format!("{base}/{}", stream_key.as_str()));
        RoomWithKey { room, stream_key, rtmp_url }
    }

    /// A room as `viewer` may see it: a room not yet live is its host's alone (404 to
    /// anyone else, so its existence does not leak).
    pub async fn room(&self, viewer: Option<&User>, room_id: &str) -> Result<Room, LiveError> {
        let row = self.room_row(room_id).await?.ok_or(LiveError::RoomNotFound)?;
        if row.status == RoomStatus::Created && viewer.map(|user| user.id.as_str()) != Some(row.host_id.as_str()) {
            return Err(LiveError::RoomNotFound);
        }
        let mut rooms = self.rooms_from_rows(vec![row]).await?;
        rooms.pop().ok_or(LiveError::RoomNotFound)
    }

    pub(crate) async fn room_row(&self, room_id: &str) -> Result<Option<RoomRow>, LiveError> {
        let row = sqlx::query(&format!("SELECT {ROOM_COLUMNS} FROM live_rooms WHERE id = $1"))
            .bind(room_id)
            .fetch_optional(self.inner.store.read())
            .await?;
        Ok(row.as_ref().map(room_row).transpose()?)
    }

    /// A page of rooms. The cursor is the last room's sort key and id, so a page never
    /// repeats or skips a room whose key did not change meanwhile.
    pub async fn rooms(
        &self,
        viewer: &User,
        list: RoomList,
        limit: PageLimit,
        cursor: Option<&str>,
    ) -> Result<Page<Room>, LiveError> {
        let position = match cursor {
            Some(cursor) => {
                let text = Cursor::parse_position(cursor).ok_or_else(|| invalid("cursor", "not a cursor"))?;
                let (key, id) = text.split_once(':').ok_or_else(|| invalid("cursor", "not a cursor"))?;
                Some((key.parse::<i64>().map_err(|_| invalid("cursor", "not a cursor"))?, id.to_string()))
            }
            None => None,
        };
        let (filter, key_column) = match list {
            RoomList::Live => ("status = 'live'", "viewers"),
            RoomList::Ended => ("status = 'ended' AND started_at IS NOT NULL", "ended_at"),
            RoomList::MineCreated => ("status = 'created' AND host_id = $3", "created_at"),
        };
        let after = if position.is_some() {
            format!("AND ({key_column} < $1 OR ({key_column} = $1 AND id > $2))")
        } else {
            "AND $1 = $1 AND $2 = $2".to_string()
        };
        let sql = format!(
            "SELECT {ROOM_COLUMNS} FROM live_rooms WHERE {filter} {after}
             ORDER BY {key_column} DESC, id ASC LIMIT {}",
            limit.probe()
        );
        let (key, id) = position.unwrap_or((0, String::new()));
        let mut query = sqlx::query(&sql).bind(key).bind(id);
        if list == RoomList::MineCreated {
            query = query.bind(&viewer.id);
        }
        let rows = query.fetch_all(self.inner.store.read()).await?;
        let rows = rows.iter().map(room_row).collect::<Result<Vec<_>, _>>()?;
        let page = Page::from_probe(rows, limit, |row| {
            let key = match list {
                RoomList::Live => row.viewers,
                RoomList::Ended => row.ended_at.map_or(0, Timestamp::unix_millis),
                RoomList::MineCreated => row.created_at.unix_millis(),
            };
            format!("{key}:{}", row.id)
        });
        let items = self.rooms_from_rows(page.items).await?;
        Ok(Page { items, next_cursor: page.next_cursor })
    }

    /// Joins hosts and product cards into rows, keeping their order.
    async fn rooms_from_rows(&self, rows: Vec<RoomRow>) -> Result<Vec<Room>, LiveError> {
        let mut host_ids: Vec<String> = rows.iter().map(|row| row.host_id.clone()).collect();
        host_ids.sort();
        host_ids.dedup();
        let hosts: HashMap<String, User> =
            self.inner.accounts.users(&host_ids).await?.into_iter().map(|user| (user.id.clone(), user)).collect();
        let mut rooms = Vec::with_capacity(rows.len());
        for row in rows {
            let Some(host) = hosts.get(&row.host_id).cloned() else { continue };
            let products = self.product_cards(&row.id).await?;
            let deal = self.running_deal(row.deal_flash_sale_id.as_deref(), row.deal_ends_at).await?;
            rooms.push(Room {
                id: row.id,
                host,
                title: row.title,
                cover_media_id: row.cover_media_id,
                status: row.status,
                viewers: row.viewers,
                likes: row.likes,
                products,
                pinned_product_id: row.pinned_product_id,
                deal,
                has_recording: row.segments > 0,
                created_at: row.created_at,
                started_at: row.started_at,
                ended_at: row.ended_at,
            });
        }
        Ok(rooms)
    }

    /// The shop's cards of a room's products that still exist, in the host's order.
    async fn product_cards(&self, room_id: &str) -> Result<Vec<serde_json::Value>, LiveError> {
        let rows = sqlx::query("SELECT product_id FROM live_room_products WHERE room_id = $1 ORDER BY position")
            .bind(room_id)
            .fetch_all(self.inner.store.read())
            .await?;
        let mut cards = Vec::with_capacity(rows.len());
        for row in rows {
            let product_id: String = row.try_get("product_id")?;
            match self.inner.shop.product_card(&product_id).await {
                Ok(card) => cards.push(card),
                Err(ShopError::ProductNotFound) => {}
                Err(error) => return Err(LiveError::Shop(error)),
            }
        }
        Ok(cards)
    }

    /// A new stream key for the host; the old one stops working at once, and a publisher
    /// using it is cut off at its next heartbeat.
    pub async fn rotate_stream_key(&self, host: &User, room_id: &str) -> Result<RoomWithKey, LiveError> {
        let row = self.host_row(host, room_id, "rotate the stream key").await?;
        if row.status == RoomStatus::Ended {
            return Err(LiveError::InvalidTransition { status: row.status, action: "take a new stream key" });
        }
        let key = StreamKey::generate();
        let changed = sqlx::query("UPDATE live_rooms SET stream_key_digest = $1 WHERE id = $2 AND status <> 'ended'")
            .bind(key.digest())
            .bind(room_id)
            .execute(self.inner.store.write())
            .await?
            .rows_affected();
        if changed == 0 {
            return Err(LiveError::InvalidTransition { status: RoomStatus::Ended, action: "take a new stream key" });
        }
        let room = self.room(Some(host), room_id).await?;
        Ok(self.with_key(room, key))
    }

    /// Ends the room at its host's word; its recording becomes the replay.
    pub async fn end_room(&self, host: &User, room_id: &str) -> Result<Room, LiveError> {
        let row = self.host_row(host, room_id, "end the room").await?;
        if !self.mark_ended(&row.id).await? {
            return Err(LiveError::InvalidTransition { status: RoomStatus::Ended, action: "end again" });
        }
        self.end_deal_with_room(&row.id).await?;
        self.publish_room(&row.id, &crate::hub::RoomNotice::Ended);
        self.write_final_playlist(&row.id).await?;
        self.room(Some(host), room_id).await
    }

    pub(crate) async fn host_row(
        &self,
        host: &User,
        room_id: &str,
        action: &'static str,
    ) -> Result<RoomRow, LiveError> {
        let row = self.room_row(room_id).await?.ok_or(LiveError::RoomNotFound)?;
        if row.host_id != host.id {
            // A room not yet live is the host's alone: others are told it does not exist.
            return Err(if row.status == RoomStatus::Created {
                LiveError::RoomNotFound
            } else {
                LiveError::NotHost { action }
            });
        }
        Ok(row)
    }

    /// `created`/`live` → `ended`; whether this call did it.
    pub(crate) async fn mark_ended(&self, room_id: &str) -> Result<bool, LiveError> {
        let changed = sqlx::query(
            "UPDATE live_rooms SET status = 'ended', ended_at = $1, ingest_node = NULL, ingest_until = NULL
             WHERE id = $2 AND status <> 'ended'",
        )
        .bind(Timestamp::now().unix_millis())
        .bind(room_id)
        .execute(self.inner.store.write())
        .await?
        .rows_affected();
        self.forget_playback_status(room_id);
        Ok(changed == 1)
    }
}

impl LiveHandle {
    /// A room's status for playback, which every player asks about once a second: kept
    /// per node for a second, so viewers cost the database one read per room and second.
    pub(crate) async fn playback_status(&self, room_id: &str) -> Result<RoomStatus, LiveError> {
        let now = std::time::Instant::now();
        let generation = {
            let cache = self.playback_cache();
            if let Some((status, at)) = cache.rooms.get(room_id).copied() {
                if now.duration_since(at) < PLAYBACK_STATUS_TTL {
                    return Ok(status);
                }
            }
            cache.generation
        };
        let status = self.room_status(room_id).await?;
        let mut cache = self.playback_cache();
        // A status change on this node while the status was read invalidated the cache:
        // what was read may be older than that change, so it is not kept.
        if cache.generation == generation {
            if cache.rooms.len() >= PLAYBACK_CACHE_ROOMS_MAX {
                cache.rooms.retain(|_, (_, at)| now.duration_since(*at) < PLAYBACK_STATUS_TTL);
                if cache.rooms.len() >= PLAYBACK_CACHE_ROOMS_MAX {
                    cache.rooms.clear();
                }
            }
            cache.rooms.insert(room_id.to_string(), (status, now));
        }
        Ok(status)
    }

    /// A room's status as the database has it now.
    pub(crate) async fn room_status(&self, room_id: &str) -> Result<RoomStatus, LiveError> {
        let row = sqlx::query("SELECT status FROM live_rooms WHERE id = $1")
            .bind(room_id)
            .fetch_optional(self.inner.store.read())
            .await?
            .ok_or(LiveError::RoomNotFound)?;
        Ok(RoomStatus::parse(&row.try_get::<String, _>("status")?).unwrap_or(RoomStatus::Ended))
    }

    /// Called after a room's status changed on this node: its playback answers by the new
    /// status at once (other nodes within a second).
    pub(crate) fn forget_playback_status(&self, room_id: &str) {
        let mut cache = self.playback_cache();
        cache.rooms.remove(room_id);
        cache.generation += 1;
    }

    fn playback_cache(&self) -> std::sync::MutexGuard<'_, PlaybackCache> {
        self.inner.playback_statuses.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Room statuses recently read for playback, and a count of invalidations.
#[derive(Debug, Default)]
pub(crate) struct PlaybackCache {
    rooms: HashMap<String, (RoomStatus, std::time::Instant)>,
    generation: u64,
}

/// How long a node trusts a room's status for playback.
const PLAYBACK_STATUS_TTL: std::time::Duration = std::time::Duration::from_secs(1);
/// Rooms whose playback status a node keeps.
const PLAYBACK_CACHE_ROOMS_MAX: usize = 10_000;

impl LiveHandle {
    /// Pins one of the host's products over the stream (`None` unpins). A product of the
    /// host's shop not yet in the room joins its products; another shop's is refused.
    pub async fn pin_product(&self, host: &User, room_id: &str, product_id: Option<&str>) -> Result<Room, LiveError> {
        let row = self.host_row(host, room_id, "pin a product").await?;
        if row.status == RoomStatus::Ended {
            return Err(LiveError::InvalidTransition { status: row.status, action: "pin a product" });
        }
        let checked = match product_id {
            Some(product_id) => {
                self.check_products(host, &[product_id.to_string()]).await.map_err(|error| match error {
                    LiveError::InvalidField { reason, .. } => invalid("product_id", reason),
                    other => other,
                })?
            }
            None => Vec::new(),
        };
        let mut transaction = self.inner.store.begin().await?;
        if let Some(product_id) = checked.first() {
            sqlx::query(
                "INSERT INTO live_room_products (room_id, product_id, position)
                 SELECT $1, $2, COALESCE(MAX(position), -1) + 1 FROM live_room_products WHERE room_id = $1
                 ON CONFLICT (room_id, product_id) DO NOTHING",
            )
            .bind(room_id)
            .bind(product_id)
            .execute(&mut *transaction)
            .await?;
        }
        let changed = sqlx::query("UPDATE live_rooms SET pinned_product_id = $1 WHERE id = $2 AND status <> 'ended'")
            .bind(product_id)
            .bind(room_id)
            .execute(&mut *transaction)
            .await?
            .rows_affected();
        if changed == 0 {
            return Err(LiveError::InvalidTransition { status: RoomStatus::Ended, action: "pin a product" });
        }
        transaction.commit().await?;
        let room = self.room(Some(host), room_id).await?;
        let product = room
            .pinned_product_id
            .as_ref()
            .and_then(|id| room.products.iter().find(|card| card["id"].as_str() == Some(id)).cloned());
        self.publish_room(room_id, &crate::hub::RoomNotice::Pinned { product });
        Ok(room)
    }
}
