//! The host's moderation of their room: mute and unmute (the viewer still watches, their
//! chat is 403 `muted`) and ban (they cannot join, and are removed from the room on every
//! node at once). Durable, per room, in `live_room_moderation`.

use crate::hub::RoomNotice;
use crate::service::{invalid, LiveError, LiveHandle};
use plaza_accounts::User;
use plaza_kernel::Timestamp;
use plaza_store::Row;

/// What the host does to a viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModerationAction {
    Mute,
    Unmute,
    Ban,
}

impl ModerationAction {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "mute" => Some(Self::Mute),
            "unmute" => Some(Self::Unmute),
            "ban" => Some(Self::Ban),
            _ => None,
        }
    }
}

/// A viewer's standing in a room after a moderation action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moderation {
    pub room_id: String,
    pub user_id: String,
    pub muted: bool,
    pub banned: bool,
}

impl LiveHandle {
    /// Mutes, unmutes or bans `user_id` in the host's room. A ban also mutes, and no
    /// action lifts a ban.
    pub async fn moderate(
        &self,
        host: &User,
        room_id: &str,
        user_id: &str,
        action: ModerationAction,
    ) -> Result<Moderation, LiveError> {
        self.host_row(host, room_id, "moderate the room").await?;
        if user_id == host.id {
            return Err(invalid("user_id", "the host cannot moderate themselves"));
        }
        let target = self.inner.accounts.user(user_id).await?;
        let (muted, banned, set) = match action {
            ModerationAction::Mute => (1, 0, "muted = 1"),
            ModerationAction::Unmute => (0, 0, "muted = 0"),
            ModerationAction::Ban => (1, 1, "muted = 1, banned = 1"),
        };
        let now = Timestamp::now().unix_millis();
        let row = sqlx::query(&format!(
            "INSERT INTO live_room_moderation (room_id, user_id, muted, banned, updated_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (room_id, user_id) DO UPDATE SET {set}, updated_at = $5
             RETURNING muted, banned"
        ))
        .bind(room_id)
        .bind(&target.id)
        .bind(muted as i64)
        .bind(banned as i64)
        .bind(now)
        .fetch_one(self.inner.store.write())
        .await?;
        let moderation = Moderation {
            room_id: room_id.to_string(),
            user_id: target.id.clone(),
            muted: row.try_get::<i64, _>("muted")? == 1,
            banned: row.try_get::<i64, _>("banned")? == 1,
        };
        if action == ModerationAction::Ban {
            self.publish_room(room_id, &RoomNotice::Banned { user_id: target.id });
        }
        Ok(moderation)
    }
}
