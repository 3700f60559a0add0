//! Images in chats: uploads, and who may fetch them.

use super::*;

impl Chat {
    /// Stores an uploaded image of `me`.
    pub async fn upload_media(&self, me: &User, bytes: bytes::Bytes) -> Result<MediaItem, ChatError> {
        Ok(self.inner.media.upload(&me.id, bytes).await?)
    }

    /// A media item and its bytes, for its uploader, for members of a conversation it was
    /// sent in, and for everyone when it is a published product photo; to anyone else it
    /// does not exist.
    pub async fn media_for(&self, me: &User, media_id: &str) -> Result<(MediaItem, bytes::Bytes), ChatError> {
        let item = self.inner.media.item(media_id).await?;
        if item.owner_id != me.id && !item.is_public() {
            let shared: Option<i64> = sqlx::query_scalar(
                "SELECT 1 FROM conversation_media cm
                 JOIN conversation_members m ON m.conversation_id = cm.conversation_id
                 WHERE cm.media_id = $1 AND m.user_id = $2 LIMIT 1",
            )
            .bind(media_id)
            .bind(&me.id)
            .fetch_optional(self.inner.store.read())
            .await?;
            if shared.is_none() {
                return Err(MediaError::NotFound.into());
            }
        }
        let bytes = self.inner.media.bytes(&item).await?;
        Ok((item, bytes))
    }
}
