//! Profiles (display name, bio, avatar) and one-way public follows.
//!
//! A follow is a row of `follows`; the followed and the follower's counts are columns of
//! `users` changed in the follow's own transaction, only when the row really appeared
//! or went, so the counts equal the rows under any concurrency and a repeated follow
//! changes nothing. The followed user hears of a new follower (`follow.new`) once.

use crate::model::{Bio, DisplayName, User};
use crate::service::{user_from_row, Accounts, AccountsError, USER_COLUMNS};
use plaza_kernel::{Cursor, Page, PageLimit, Timestamp};
use plaza_media::MediaError;
use plaza_store::Row;
use serde_json::json;

/// What `PATCH /me` may change; `None` leaves a field as it is.
#[derive(Debug, Default, Clone)]
pub struct ProfileChange {
    pub display_name: Option<String>,
    pub bio: Option<String>,
    /// An image the user uploaded; it becomes public (avatars are seen by everyone).
    pub avatar_media_id: Option<String>,
}

/// Whose list of follows to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowList {
    /// Who follows the user.
    Followers,
    /// Whom the user follows.
    Following,
}

/// The most ids [`Accounts::following_ids`] returns: a feed reads at most this many
/// people's videos.
pub const FOLLOWING_IDS_MAX: i64 = 5_000;

impl Accounts {
    /// Changes the caller's profile and returns it as it now is.
    pub async fn update_profile(&self, me: &User, change: ProfileChange) -> Result<User, AccountsError> {
        let display_name = change
            .display_name
            .as_deref()
            .map(DisplayName::parse)
            .transpose()
            .map_err(|reason| AccountsError::InvalidField { field: "display_name", reason })?;
        let bio = change
            .bio
            .as_deref()
            .map(Bio::parse)
            .transpose()
            .map_err(|reason| AccountsError::InvalidField { field: "bio", reason })?;
        let avatar_url = match change.avatar_media_id.as_deref() {
            None => None,
            Some(media_id) => {
                self.inner.media.publish_avatar(&me.id, media_id).await.map_err(|error| match error {
                    MediaError::NotFound | MediaError::NotOwned { .. } => {
                        AccountsError::InvalidField { field: "avatar_media_id", reason: "not an image you uploaded" }
                    }
                    MediaError::Database(error) => AccountsError::Database(error),
                    other => AccountsError::Media(other),
                })?;
                Some(format!("/api/v1/media/{media_id}"))
            }
        };
        sqlx::query(
            "UPDATE users SET
                 display_name = COALESCE($2, display_name),
                 display_name_lower = COALESCE($3, display_name_lower),
                 bio = COALESCE($4, bio),
                 avatar_url = COALESCE($5, avatar_url)
             WHERE id = $1",
        )
        .bind(&me.id)
        .bind(display_name.as_ref().map(|name| name.as_str().to_string()))
        .bind(display_name.as_ref().map(|name| name.as_str().to_lowercase()))
        .bind(bio.as_ref().map(|bio| bio.as_str().to_string()))
        .bind(avatar_url)
        .execute(self.inner.store.write())
        .await?;
        // This node answers with the new profile at once; others within the cache's TTL.
        self.inner.sessions.remove_user(&me.id, None);
        self.user(&me.id).await
    }

    /// `me` follows `other_id`; following someone already followed changes nothing.
    pub async fn follow(&self, me: &User, other_id: &str) -> Result<(), AccountsError> {
        if me.id == other_id {
            return Err(AccountsError::CannotFollowSelf);
        }
        let now = Timestamp::now();
        let mut transaction = self.inner.store.begin().await?;
        let exists: Option<String> = sqlx::query_scalar("SELECT id FROM users WHERE id = $1")
            .bind(other_id)
            .fetch_optional(&mut *transaction)
            .await?;
        if exists.is_none() {
            return Err(AccountsError::UserNotFound);
        }
        let inserted = sqlx::query(
            "INSERT INTO follows (follower_id, followee_id, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (follower_id, followee_id) DO NOTHING",
        )
        .bind(&me.id)
        .bind(other_id)
        .bind(now.unix_millis())
        .execute(&mut *transaction)
        .await?;
        if inserted.rows_affected() == 0 {
            return Ok(());
        }
        adjust_counts(&mut transaction, &me.id, other_id, 1).await?;
        let data = json!({
            "follower": {
                "id": me.id, "username": me.username, "display_name": me.display_name,
                "avatar_url": me.avatar_url,
            },
            "at": now.to_rfc3339(),
        });
        let appended = self.inner.events.append(&mut transaction, &[other_id.to_string()], "follow.new", &data).await?;
        transaction.commit().await?;
        self.inner.events.publish(appended);
        self.forget_cached(&me.id, other_id);
        Ok(())
    }

    /// `me` stops following `other_id`; unfollowing someone not followed changes nothing.
    pub async fn unfollow(&self, me: &User, other_id: &str) -> Result<(), AccountsError> {
        let mut transaction = self.inner.store.begin().await?;
        let deleted = sqlx::query("DELETE FROM follows WHERE follower_id = $1 AND followee_id = $2")
            .bind(&me.id)
            .bind(other_id)
            .execute(&mut *transaction)
            .await?;
        if deleted.rows_affected() == 0 {
            let exists: Option<String> = sqlx::query_scalar("SELECT id FROM users WHERE id = $1")
                .bind(other_id)
                .fetch_optional(&mut *transaction)
                .await?;
            return if exists.is_some() { Ok(()) } else { Err(AccountsError::UserNotFound) };
        }
        adjust_counts(&mut transaction, &me.id, other_id, -1).await?;
        transaction.commit().await?;
        self.forget_cached(&me.id, other_id);
        Ok(())
    }

    /// A user's followers or followings, most recent follow first.
    pub async fn follow_list(
        &self,
        user_id: &str,
        list: FollowList,
        limit: PageLimit,
        cursor: Option<&str>,
    ) -> Result<Page<User>, AccountsError> {
        self.user(user_id).await?;
        let (mine, theirs) = match list {
            FollowList::Followers => ("followee_id", "follower_id"),
            FollowList::Following => ("follower_id", "followee_id"),
        };
        // The position is "created_at:user id", newest first.
        let (before_ms, before_id) = match cursor {
            None | Some("") => (i64::MAX, String::new()),
            Some(opaque) => Cursor::parse_position(opaque)
                .and_then(|position| {
                    let (ms, id) = position.split_once(':')?;
                    Some((ms.parse::<i64>().ok()?, id.to_string()))
                })
                .ok_or(AccountsError::InvalidField { field: "cursor", reason: "not a cursor this server issued" })?,
        };
        let rows = sqlx::query(&format!(
            "SELECT {USER_COLUMNS}, f.created_at AS followed_at FROM follows f JOIN users u ON u.id = f.{theirs}
             WHERE f.{mine} = $1 AND (f.created_at < $2 OR (f.created_at = $2 AND f.{theirs} < $3))
             ORDER BY f.created_at DESC, f.{theirs} DESC LIMIT $4"
        ))
        .bind(user_id)
        .bind(before_ms)
        .bind(&before_id)
        .bind(limit.probe())
        .fetch_all(self.inner.store.read())
        .await?;
        let mut entries = Vec::with_capacity(rows.len());
        for row in &rows {
            let followed_at: i64 = row.try_get("followed_at")?;
            entries.push((followed_at, user_from_row(row)?));
        }
        let page = Page::from_probe(entries, limit, |(at, user)| format!("{at}:{}", user.id));
        Ok(page.map(|(_, user)| user))
    }

    /// Which of `ids` `me` follows.
    pub async fn followed_among(&self, me_id: &str, ids: &[String]) -> Result<Vec<String>, AccountsError> {
        let mut followed = Vec::new();
        for chunk in ids.chunks(500) {
            let placeholders = plaza_store::numbered_parameters(2, chunk.len());
            let sql =
                format!("SELECT followee_id FROM follows WHERE follower_id = $1 AND followee_id IN ({})", placeholders);
            let mut query = sqlx::query_scalar::<_, String>(&sql).bind(me_id);
            for id in chunk {
                query = query.bind(id);
            }
            followed.extend(query.fetch_all(self.inner.store.read()).await?);
        }
        Ok(followed)
    }

    /// Whether `follower_id` follows `followee_id`.
    pub async fn follows(&self, follower_id: &str, followee_id: &str) -> Result<bool, AccountsError> {
        Ok(!self.followed_among(follower_id, &[followee_id.to_string()]).await?.is_empty())
    }

    /// The people `user_id` follows, most recently followed first, at most
    /// [`FOLLOWING_IDS_MAX`].
    pub async fn following_ids(&self, user_id: &str) -> Result<Vec<String>, AccountsError> {
        Ok(sqlx::query_scalar(
            "SELECT followee_id FROM follows WHERE follower_id = $1 ORDER BY created_at DESC LIMIT $2",
        )
        .bind(user_id)
        .bind(FOLLOWING_IDS_MAX)
        .fetch_all(self.inner.store.read())
        .await?)
    }

    /// Both profiles' counts changed: this node serves them fresh at once.
    fn forget_cached(&self, me_id: &str, other_id: &str) {
        self.inner.sessions.remove_user(me_id, None);
        self.inner.sessions.remove_user(other_id, None);
    }
}

/// Both users' rows are updated in id order, so two people following each other at
/// once never wait on each other in a cycle.
async fn adjust_counts(
    transaction: &mut sqlx::Transaction<'_, sqlx::Any>,
    follower_id: &str,
    followee_id: &str,
    delta: i64,
) -> Result<(), sqlx::Error> {
    let mut updates = [(follower_id, "following_count"), (followee_id, "followers_count")];
    updates.sort();
    for (id, column) in updates {
        sqlx::query(&format!("UPDATE users SET {column} = {column} + $2 WHERE id = $1"))
            .bind(id)
            .bind(delta)
            .execute(&mut **transaction)
            .await?;
    }
    Ok(())
}
