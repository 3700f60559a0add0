//! Problem details (RFC 9457) with a stable `code`. [`ErrorCode`] is the single catalogue
//! of codes: adding a variant forces a choice of status in [`ErrorCode::status`], whose
//! match is exhaustive, so no failure silently becomes a 400 or a 500.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Every machine-readable error code a client can see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The body is not well-formed JSON.
    MalformedJson,
    /// A request that cannot be understood at all (bad header, bad path segment).
    BadRequest,
    /// A field is missing, of the wrong type, or fails validation; `field` names it.
    InvalidField,
    /// No bearer token, or one that is unknown, expired or revoked.
    Unauthenticated,
    /// Wrong username or password (deliberately the same for an unknown user).
    InvalidCredentials,
    /// Authenticated, but not allowed to do this.
    Forbidden,
    /// No such route.
    NotFound,
    /// No such user (or one the caller may not see).
    UserNotFound,
    /// The route exists but not with this method.
    MethodNotAllowed,
    /// The username is taken (usernames are unique regardless of case).
    UsernameTaken,
    /// A contact request to oneself.
    CannotContactSelf,
    /// No contact or contact request with that user.
    ContactNotFound,
    /// No such conversation, or the caller is not a member of it.
    ConversationNotFound,
    /// The user named is not a member of the conversation.
    NotAMember,
    /// A group-only operation on a direct conversation.
    NotAGroup,
    /// Only the group's owner may do this.
    NotConversationOwner,
    /// Adding members would exceed the group's size limit, or every seat of a group buy is taken.
    GroupFull,
    /// Only a person's contacts may put them into a group.
    NotAContact,
    /// The person left this group; only they can come back.
    LeftConversation,
    /// This card type is posted by its own service, or names nothing the sender may see.
    CardNotAllowed,
    /// No such media, or the caller may not see it.
    MediaNotFound,
    /// The events after a cursor were pruned from the log; reload state and continue from now.
    CursorExpired,
    /// The request body is larger than the endpoint accepts.
    PayloadTooLarge,
    /// The body is not `application/json`.
    UnsupportedMediaType,
    /// Too many attempts; `Retry-After` says when to try again.
    RateLimited,
    /// The request took too long and was abandoned.
    Timeout,
    /// Not enough available balance for the payment.
    InsufficientFunds,
    /// The Idempotency-Key was already used with a different request.
    IdempotencyKeyReused,
    /// A request with this Idempotency-Key is still being processed.
    IdempotencyKeyInProgress,
    /// The top-up would exceed the daily limit.
    TopupLimitExceeded,
    /// The user already holds as many real-time sockets on this node as allowed.
    TooManyConnections,
    /// Today's uploads (count or bytes) are used up; `Retry-After` says when more are allowed.
    UploadLimitExceeded,
    /// A payment PIN is set and the request did not carry it.
    PinRequired,
    /// The payment PIN is wrong.
    WrongPin,
    /// Too many wrong PINs: payments are locked for a while (`Retry-After`).
    PinLocked,
    /// No such red packet, or the caller may not see it.
    RedPacketNotFound,
    /// The caller already claimed a share of this red packet.
    AlreadyClaimed,
    /// Every share of the red packet has been claimed.
    RedPacketEmpty,
    /// In a direct chat only the other person may claim a red packet, not its sender.
    OwnRedPacket,
    /// The red packet has expired and its money went back to the sender.
    RedPacketExpired,
    /// No such payment intent.
    PaymentIntentNotFound,
    /// The object's current state does not allow this action.
    InvalidTransition,
    /// The funding provider (card, bank) refused or did not answer.
    FundingProviderFailed,
    /// No such quote, or not yours.
    QuoteNotFound,
    /// The quote is older than its validity.
    QuoteExpired,
    /// No such ride, or one the caller may not see.
    RideNotFound,
    /// The rider already has a ride under way.
    RideAlreadyOpen,
    /// The driver must go online first.
    DriverOffline,
    /// A location update implies an impossible speed.
    LocationJump,
    /// The driver's last known location is not at the ride's pickup (arrive, start).
    NotAtPickup,
    /// The driver's last known location is not at the ride's drop-off (complete).
    NotAtDropoff,
    /// The caller already rated this ride.
    AlreadyRated,
    /// No such shop.
    ShopNotFound,
    /// The caller already has a shop (one per user).
    ShopAlreadyExists,
    /// No such product, or the caller may not see it.
    ProductNotFound,
    /// The product was archived and cannot be bought.
    ProductArchived,
    /// No such order, or the caller is neither its buyer nor its seller.
    OrderNotFound,
    /// Not enough stock of a SKU for the quantity ordered.
    OutOfStock,
    /// The buyer already reviewed this order.
    AlreadyReviewed,
    /// No such group buy, or the caller may not see it.
    GroupBuyNotFound,
    /// The group buy's window ended (or it failed) before the caller joined.
    GroupExpired,
    /// The caller is already a member of this group buy.
    AlreadyInGroup,
    /// No such flash sale.
    FlashSaleNotFound,
    /// The flash sale has not started yet.
    SaleNotStarted,
    /// The flash sale has ended.
    SaleEnded,
    /// The flash sale has no units left.
    SoldOut,
    /// The order would take the buyer past the flash sale's per-user limit.
    LimitReached,
    /// No such mini-app.
    MiniappNotFound,
    /// The developer already has as many mini-apps as one may register.
    MiniappLimitReached,
    /// An OAuth authorization request that cannot be sent back to the app (unknown
    /// client, unregistered redirect URI) or is otherwise malformed.
    InvalidAuthorizationRequest,
    /// An OAuth access token that is unknown, expired, revoked, or of the wrong kind.
    InvalidToken,
    /// The OAuth access token does not carry the scope this needs.
    InsufficientScope,
    /// A dependency (usually the database) is unavailable.
    Unavailable,
    /// Following oneself.
    CannotFollowSelf,
    /// No such video, or one the caller may not see.
    VideoNotFound,
    /// No such resumable upload of the caller's, or one that expired.
    UploadNotFound,
    /// A tus `PATCH` whose `Upload-Offset` is not where the upload stands (`HEAD` tells).
    UploadOffsetMismatch,
    /// Publishing an upload that has not received all its bytes.
    UploadIncomplete,
    /// A tus request without `Tus-Resumable: 1.0.0`.
    TusVersionUnsupported,
    /// No such comment on that video.
    CommentNotFound,
    /// A tus `PATCH` while another request is writing the same upload.
    UploadBusy,
    /// A `Range` that starts past the end of the file.
    RangeNotSatisfiable,
    /// No such pay order, or not one the caller may see.
    PayOrderNotFound,
    /// A pay order confirmed after its 15 minutes (or refunded before it was paid).
    PayOrderExpired,
    /// A refund of a pay order that was never paid.
    PayOrderNotPaid,
    /// The app already has a pay order with this `out_trade_no` (under another Idempotency-Key).
    OutTradeNoTaken,
    /// A refund that would take back more than the pay order paid.
    RefundExceedsPayment,
    /// No such webhook delivery for that app.
    WebhookDeliveryNotFound,
    /// No such live room, or one not live yet that is not the caller's.
    LiveRoomNotFound,
    /// A live room shows only products of its host's own shop.
    ProductNotInShop,
    /// The live room has ended: it cannot be joined or chatted in.
    LiveRoomEnded,
    /// Live chat from someone who has not joined the room (`live.join`) on any socket.
    LiveRoomNotJoined,
    /// A socket joined as many live rooms as one may; leave one first.
    TooManyRooms,
    /// The room's host muted (or banned) the caller: their chat is refused.
    Muted,
    /// The room's host banned the caller: they cannot join it.
    Banned,
    /// No such live chat message in that room.
    LiveMessageNotFound,
    /// The live room is not live yet (no media arrived): it cannot run a deal.
    LiveRoomNotLive,
    /// The live room runs a deal already; one at a time.
    LiveDealRunning,
    /// A bug or an unexpected failure; logged with the request id.
    Internal,
}

impl ErrorCode {
    pub fn status(self) -> StatusCode {
        match self {
            Self::MalformedJson | Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::InvalidField | Self::CannotContactSelf => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthenticated | Self::InvalidCredentials => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound | Self::UserNotFound | Self::ContactNotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::UsernameTaken => StatusCode::CONFLICT,
            Self::ConversationNotFound => StatusCode::NOT_FOUND,
            Self::NotAMember => StatusCode::NOT_FOUND,
            Self::NotAGroup => StatusCode::CONFLICT,
            Self::NotConversationOwner => StatusCode::FORBIDDEN,
            Self::GroupFull => StatusCode::CONFLICT,
            Self::NotAContact => StatusCode::FORBIDDEN,
            Self::LeftConversation => StatusCode::FORBIDDEN,
            Self::CardNotAllowed => StatusCode::UNPROCESSABLE_ENTITY,
            Self::MediaNotFound => StatusCode::NOT_FOUND,
            Self::CursorExpired => StatusCode::GONE,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::Timeout => StatusCode::REQUEST_TIMEOUT,
            Self::InsufficientFunds => StatusCode::PAYMENT_REQUIRED,
            Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::IdempotencyKeyInProgress => StatusCode::CONFLICT,
            Self::TopupLimitExceeded => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyConnections | Self::UploadLimitExceeded => StatusCode::TOO_MANY_REQUESTS,
            Self::PinRequired => StatusCode::FORBIDDEN,
            Self::WrongPin => StatusCode::FORBIDDEN,
            Self::PinLocked => StatusCode::FORBIDDEN,
            Self::RedPacketNotFound => StatusCode::NOT_FOUND,
            Self::AlreadyClaimed => StatusCode::CONFLICT,
            Self::RedPacketEmpty => StatusCode::CONFLICT,
            Self::OwnRedPacket => StatusCode::FORBIDDEN,
            Self::RedPacketExpired => StatusCode::CONFLICT,
            Self::PaymentIntentNotFound => StatusCode::NOT_FOUND,
            Self::InvalidTransition => StatusCode::CONFLICT,
            Self::FundingProviderFailed => StatusCode::BAD_GATEWAY,
            Self::QuoteNotFound => StatusCode::NOT_FOUND,
            Self::QuoteExpired => StatusCode::CONFLICT,
            Self::RideNotFound => StatusCode::NOT_FOUND,
            Self::RideAlreadyOpen => StatusCode::CONFLICT,
            Self::DriverOffline => StatusCode::CONFLICT,
            Self::LocationJump => StatusCode::UNPROCESSABLE_ENTITY,
            Self::NotAtPickup | Self::NotAtDropoff => StatusCode::CONFLICT,
            Self::AlreadyRated => StatusCode::CONFLICT,
            Self::ShopNotFound => StatusCode::NOT_FOUND,
            Self::MiniappNotFound => StatusCode::NOT_FOUND,
            Self::MiniappLimitReached => StatusCode::CONFLICT,
            Self::InvalidAuthorizationRequest => StatusCode::BAD_REQUEST,
            Self::InvalidToken => StatusCode::UNAUTHORIZED,
            Self::InsufficientScope => StatusCode::FORBIDDEN,
            Self::ShopAlreadyExists => StatusCode::CONFLICT,
            Self::ProductNotFound => StatusCode::NOT_FOUND,
            Self::ProductArchived => StatusCode::CONFLICT,
            Self::OrderNotFound => StatusCode::NOT_FOUND,
            Self::OutOfStock => StatusCode::CONFLICT,
            Self::AlreadyReviewed => StatusCode::CONFLICT,
            Self::GroupBuyNotFound => StatusCode::NOT_FOUND,
            Self::GroupExpired => StatusCode::CONFLICT,
            Self::AlreadyInGroup => StatusCode::CONFLICT,
            Self::FlashSaleNotFound => StatusCode::NOT_FOUND,
            Self::SaleNotStarted => StatusCode::CONFLICT,
            Self::SaleEnded => StatusCode::CONFLICT,
            Self::SoldOut => StatusCode::CONFLICT,
            Self::LimitReached => StatusCode::CONFLICT,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::CannotFollowSelf => StatusCode::UNPROCESSABLE_ENTITY,
            Self::VideoNotFound => StatusCode::NOT_FOUND,
            Self::UploadNotFound => StatusCode::NOT_FOUND,
            Self::UploadOffsetMismatch => StatusCode::CONFLICT,
            Self::UploadIncomplete => StatusCode::CONFLICT,
            Self::TusVersionUnsupported => StatusCode::PRECONDITION_FAILED,
            Self::CommentNotFound => StatusCode::NOT_FOUND,
            Self::UploadBusy => StatusCode::CONFLICT,
            Self::RangeNotSatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
            Self::PayOrderNotFound => StatusCode::NOT_FOUND,
            Self::PayOrderExpired => StatusCode::CONFLICT,
            Self::PayOrderNotPaid => StatusCode::CONFLICT,
            Self::OutTradeNoTaken => StatusCode::CONFLICT,
            Self::RefundExceedsPayment => StatusCode::CONFLICT,
            Self::WebhookDeliveryNotFound => StatusCode::NOT_FOUND,
            Self::LiveRoomNotFound => StatusCode::NOT_FOUND,
            Self::ProductNotInShop => StatusCode::UNPROCESSABLE_ENTITY,
            Self::LiveRoomEnded | Self::LiveRoomNotJoined | Self::TooManyRooms => StatusCode::CONFLICT,
            Self::Muted | Self::Banned => StatusCode::FORBIDDEN,
            Self::LiveMessageNotFound => StatusCode::NOT_FOUND,
            Self::LiveRoomNotLive | Self::LiveDealRunning => StatusCode::CONFLICT,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::MalformedJson => "malformed_json",
            Self::BadRequest => "bad_request",
            Self::InvalidField => "invalid_field",
            Self::Unauthenticated => "unauthenticated",
            Self::InvalidCredentials => "invalid_credentials",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::UserNotFound => "user_not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::UsernameTaken => "username_taken",
            Self::CannotContactSelf => "cannot_contact_self",
            Self::ContactNotFound => "contact_not_found",
            Self::ConversationNotFound => "conversation_not_found",
            Self::NotAMember => "not_a_member",
            Self::NotAGroup => "not_a_group",
            Self::NotConversationOwner => "not_conversation_owner",
            Self::GroupFull => "group_full",
            Self::NotAContact => "not_a_contact",
            Self::LeftConversation => "left_conversation",
            Self::CardNotAllowed => "card_not_allowed",
            Self::MediaNotFound => "media_not_found",
            Self::CursorExpired => "cursor_expired",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::RateLimited => "rate_limited",
            Self::Timeout => "timeout",
            Self::InsufficientFunds => "insufficient_funds",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::IdempotencyKeyInProgress => "idempotency_key_in_progress",
            Self::TopupLimitExceeded => "topup_limit_exceeded",
            Self::TooManyConnections => "too_many_connections",
            Self::UploadLimitExceeded => "upload_limit_exceeded",
            Self::PinRequired => "pin_required",
            Self::WrongPin => "wrong_pin",
            Self::PinLocked => "pin_locked",
            Self::RedPacketNotFound => "red_packet_not_found",
            Self::AlreadyClaimed => "already_claimed",
            Self::RedPacketEmpty => "red_packet_empty",
            Self::OwnRedPacket => "own_red_packet",
            Self::RedPacketExpired => "red_packet_expired",
            Self::PaymentIntentNotFound => "payment_intent_not_found",
            Self::InvalidTransition => "invalid_transition",
            Self::FundingProviderFailed => "funding_provider_failed",
            Self::QuoteNotFound => "quote_not_found",
            Self::QuoteExpired => "quote_expired",
            Self::RideNotFound => "ride_not_found",
            Self::RideAlreadyOpen => "ride_already_open",
            Self::DriverOffline => "driver_offline",
            Self::LocationJump => "location_jump",
            Self::NotAtPickup => "not_at_pickup",
            Self::NotAtDropoff => "not_at_dropoff",
            Self::AlreadyRated => "already_rated",
            Self::ShopNotFound => "shop_not_found",
            Self::MiniappNotFound => "miniapp_not_found",
            Self::MiniappLimitReached => "miniapp_limit_reached",
            Self::InvalidAuthorizationRequest => "invalid_authorization_request",
            Self::InvalidToken => "invalid_token",
            Self::InsufficientScope => "insufficient_scope",
            Self::ShopAlreadyExists => "shop_already_exists",
            Self::ProductNotFound => "product_not_found",
            Self::ProductArchived => "product_archived",
            Self::OrderNotFound => "order_not_found",
            Self::OutOfStock => "out_of_stock",
            Self::AlreadyReviewed => "already_reviewed",
            Self::GroupBuyNotFound => "group_buy_not_found",
            Self::GroupExpired => "group_expired",
            Self::AlreadyInGroup => "already_in_group",
            Self::FlashSaleNotFound => "flash_sale_not_found",
            Self::SaleNotStarted => "sale_not_started",
            Self::SaleEnded => "sale_ended",
            Self::SoldOut => "sold_out",
            Self::LimitReached => "limit_reached",
            Self::Unavailable => "unavailable",
            Self::CannotFollowSelf => "cannot_follow_self",
            Self::VideoNotFound => "video_not_found",
            Self::UploadNotFound => "upload_not_found",
            Self::UploadOffsetMismatch => "upload_offset_mismatch",
            Self::UploadIncomplete => "upload_incomplete",
            Self::TusVersionUnsupported => "tus_version_unsupported",
            Self::CommentNotFound => "comment_not_found",
            Self::UploadBusy => "upload_busy",
            Self::RangeNotSatisfiable => "range_not_satisfiable",
            Self::PayOrderNotFound => "pay_order_not_found",
            Self::PayOrderExpired => "pay_order_expired",
            Self::PayOrderNotPaid => "pay_order_not_paid",
            Self::OutTradeNoTaken => "out_trade_no_taken",
            Self::RefundExceedsPayment => "refund_exceeds_payment",
            Self::WebhookDeliveryNotFound => "webhook_delivery_not_found",
            Self::LiveRoomNotFound => "live_room_not_found",
            Self::ProductNotInShop => "product_not_in_shop",
            Self::LiveRoomEnded => "live_room_ended",
            Self::LiveRoomNotJoined => "live_room_not_joined",
            Self::TooManyRooms => "too_many_rooms",
            Self::Muted => "muted",
            Self::Banned => "banned",
            Self::LiveMessageNotFound => "live_message_not_found",
            Self::LiveRoomNotLive => "live_room_not_live",
            Self::LiveDealRunning => "live_deal_running",
            Self::Internal => "internal",
        }
    }

    /// A short, human summary that does not change from one occurrence to the next.
    pub fn title(self) -> &'static str {
        match self {
            Self::MalformedJson => "The request body is not valid JSON",
            Self::BadRequest => "The request could not be understood",
            Self::InvalidField => "A field is missing or invalid",
            Self::Unauthenticated => "Authentication is required",
            Self::InvalidCredentials => "Wrong username or password",
            Self::Forbidden => "Not allowed",
            Self::NotFound => "Not found",
            Self::UserNotFound => "No such user",
            Self::MethodNotAllowed => "Method not allowed",
            Self::UsernameTaken => "The username is taken",
            Self::CannotContactSelf => "You cannot add yourself as a contact",
            Self::ContactNotFound => "No such contact or contact request",
            Self::ConversationNotFound => "No such conversation",
            Self::NotAMember => "That user is not a member of this conversation",
            Self::NotAGroup => "Only group conversations have members to add or remove",
            Self::NotConversationOwner => "Only the group's owner can do that",
            Self::GroupFull => "The group has as many members as it may have",
            Self::NotAContact => "Only a person's contacts can add them to a group",
            Self::LeftConversation => "That person left the group; only they can come back",
            Self::CardNotAllowed => "That card cannot be posted",
            Self::MediaNotFound => "No such media",
            Self::CursorExpired => "Events after this cursor are no longer kept",
            Self::PayloadTooLarge => "The request body is too large",
            Self::UnsupportedMediaType => "The request body must be application/json",
            Self::RateLimited => "Too many requests",
            Self::Timeout => "The request took too long",
            Self::InsufficientFunds => "Not enough money available",
            Self::IdempotencyKeyReused => "This Idempotency-Key was used for another request",
            Self::IdempotencyKeyInProgress => "A request with this Idempotency-Key is in progress",
            Self::TopupLimitExceeded => "The daily top-up limit would be exceeded",
            Self::TooManyConnections => "Too many connections",
            Self::UploadLimitExceeded => "The daily upload limit is reached",
            Self::PinRequired => "The payment PIN is required",
            Self::WrongPin => "Wrong payment PIN",
            Self::PinLocked => "Payments are locked after too many wrong PINs",
            Self::RedPacketNotFound => "No such red packet",
            Self::AlreadyClaimed => "You already claimed this red packet",
            Self::RedPacketEmpty => "The red packet is empty",
            Self::OwnRedPacket => "Your own red packet in a direct chat",
            Self::RedPacketExpired => "The red packet has expired",
            Self::PaymentIntentNotFound => "No such payment intent",
            Self::InvalidTransition => "Not allowed in the current state",
            Self::FundingProviderFailed => "The funding provider failed",
            Self::QuoteNotFound => "No such quote",
            Self::QuoteExpired => "The quote has expired",
            Self::RideNotFound => "No such ride",
            Self::RideAlreadyOpen => "You already have an open ride",
            Self::DriverOffline => "The driver is offline",
            Self::LocationJump => "The location jumped too far too fast",
            Self::NotAtPickup => "The driver is not at the pickup",
            Self::NotAtDropoff => "The driver is not at the drop-off",
            Self::AlreadyRated => "You already rated this ride",
            Self::ShopNotFound => "No such shop",
            Self::MiniappNotFound => "No such mini-app",
            Self::MiniappLimitReached => "You have registered as many mini-apps as one may",
            Self::InvalidAuthorizationRequest => "The authorization request is invalid",
            Self::InvalidToken => "The access token is not accepted",
            Self::InsufficientScope => "The access token lacks a scope this needs",
            Self::ShopAlreadyExists => "You already have a shop",
            Self::ProductNotFound => "No such product",
            Self::ProductArchived => "The product is archived",
            Self::OrderNotFound => "No such order",
            Self::OutOfStock => "Not enough stock",
            Self::AlreadyReviewed => "You already reviewed this order",
            Self::GroupBuyNotFound => "No such group buy",
            Self::GroupExpired => "The group buy has ended",
            Self::AlreadyInGroup => "You are already in this group",
            Self::FlashSaleNotFound => "No such flash sale",
            Self::SaleNotStarted => "The sale has not started",
            Self::SaleEnded => "The sale has ended",
            Self::SoldOut => "Sold out",
            Self::LimitReached => "You reached this sale's limit",
            Self::Unavailable => "The service is temporarily unavailable",
            Self::CannotFollowSelf => "You cannot follow yourself",
            Self::VideoNotFound => "No such video",
            Self::UploadNotFound => "No such upload",
            Self::UploadOffsetMismatch => "The upload is not at that offset",
            Self::UploadIncomplete => "The upload is not complete",
            Self::TusVersionUnsupported => "Only tus 1.0.0 is supported",
            Self::CommentNotFound => "No such comment",
            Self::UploadBusy => "The upload is being written by another request",
            Self::RangeNotSatisfiable => "The range asked for is outside the file",
            Self::PayOrderNotFound => "No such pay order",
            Self::PayOrderExpired => "The pay order has expired",
            Self::PayOrderNotPaid => "The pay order is not paid",
            Self::OutTradeNoTaken => "This out_trade_no is already used",
            Self::RefundExceedsPayment => "Refunds cannot exceed the payment",
            Self::WebhookDeliveryNotFound => "No such webhook delivery",
            Self::LiveRoomNotFound => "No such live room",
            Self::ProductNotInShop => "The product is not sold by your shop",
            Self::LiveRoomEnded => "The live room has ended",
            Self::LiveRoomNotJoined => "Join the live room first",
            Self::TooManyRooms => "Too many live rooms joined",
            Self::Muted => "You are muted in this room",
            Self::Banned => "You are banned from this room",
            Self::LiveMessageNotFound => "No such chat message",
            Self::LiveRoomNotLive => "The live room is not live yet",
            Self::LiveDealRunning => "A deal is running in this room already",
            Self::Internal => "Something went wrong on our side",
        }
    }

    /// Every code, for documentation and for the test that each one has a distinct name.
    pub const ALL: &'static [ErrorCode] = &[
        Self::MalformedJson,
        Self::BadRequest,
        Self::InvalidField,
        Self::Unauthenticated,
        Self::InvalidCredentials,
        Self::Forbidden,
        Self::NotFound,
        Self::UserNotFound,
        Self::MethodNotAllowed,
        Self::UsernameTaken,
        Self::CannotContactSelf,
        Self::ContactNotFound,
        Self::ConversationNotFound,
        Self::NotAMember,
        Self::NotAGroup,
        Self::NotConversationOwner,
        Self::GroupFull,
        Self::NotAContact,
        Self::LeftConversation,
        Self::CardNotAllowed,
        Self::MediaNotFound,
        Self::CursorExpired,
        Self::PayloadTooLarge,
        Self::UnsupportedMediaType,
        Self::RateLimited,
        Self::Timeout,
        Self::InsufficientFunds,
        Self::IdempotencyKeyReused,
        Self::IdempotencyKeyInProgress,
        Self::TopupLimitExceeded,
        Self::TooManyConnections,
        Self::UploadLimitExceeded,
        Self::PinRequired,
        Self::WrongPin,
        Self::PinLocked,
        Self::RedPacketNotFound,
        Self::AlreadyClaimed,
        Self::RedPacketEmpty,
        Self::OwnRedPacket,
        Self::RedPacketExpired,
        Self::PaymentIntentNotFound,
        Self::InvalidTransition,
        Self::FundingProviderFailed,
        Self::QuoteNotFound,
        Self::QuoteExpired,
        Self::RideNotFound,
        Self::RideAlreadyOpen,
        Self::DriverOffline,
        Self::LocationJump,
        Self::NotAtPickup,
        Self::NotAtDropoff,
        Self::AlreadyRated,
        Self::ShopNotFound,
        Self::ShopAlreadyExists,
        Self::ProductNotFound,
        Self::ProductArchived,
        Self::OrderNotFound,
        Self::OutOfStock,
        Self::AlreadyReviewed,
        Self::GroupBuyNotFound,
        Self::GroupExpired,
        Self::AlreadyInGroup,
        Self::FlashSaleNotFound,
        Self::SaleNotStarted,
        Self::SaleEnded,
        Self::SoldOut,
        Self::LimitReached,
        Self::MiniappNotFound,
        Self::MiniappLimitReached,
        Self::InvalidAuthorizationRequest,
        Self::InvalidToken,
        Self::InsufficientScope,
        Self::Unavailable,
        Self::CannotFollowSelf,
        Self::VideoNotFound,
        Self::UploadNotFound,
        Self::UploadOffsetMismatch,
        Self::UploadIncomplete,
        Self::TusVersionUnsupported,
        Self::CommentNotFound,
        Self::UploadBusy,
        Self::RangeNotSatisfiable,
        Self::PayOrderNotFound,
        Self::PayOrderExpired,
        Self::PayOrderNotPaid,
        Self::OutTradeNoTaken,
        Self::RefundExceedsPayment,
        Self::WebhookDeliveryNotFound,
        Self::LiveRoomNotFound,
        Self::ProductNotInShop,
        Self::LiveRoomEnded,
        Self::LiveRoomNotJoined,
        Self::TooManyRooms,
        Self::Muted,
        Self::Banned,
        Self::LiveMessageNotFound,
        Self::LiveRoomNotLive,
        Self::LiveDealRunning,
        Self::Internal,
    ];
}

/// A failure as the client sees it.
#[derive(Debug, Clone)]
pub struct Problem {
    code: ErrorCode,
    detail: String,
    field: Option<String>,
    retry_after_seconds: Option<u64>,
    /// Typed members for clients (RFC 9457 §3.2 extension members), beside `detail`'s words.
    extensions: serde_json::Map<String, serde_json::Value>,
}

impl Problem {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self { code, detail: detail.into(), field: None, retry_after_seconds: None, extensions: serde_json::Map::new() }
    }

    /// A 422 naming the offending field (a dotted path for nested fields).
    pub fn invalid_field(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidField, detail).with_field(field)
    }

    /// An unexpected failure. The cause is logged here, once, with the request id;
    /// the client sees only the generic title.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(request_id = %crate::request_id::current(), "internal error: {cause}");
        Self::new(ErrorCode::Internal, ErrorCode::Internal.title())
    }

    /// Names the offending field; an empty name (the body as a whole) names none.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        let field = field.into();
        self.field = (!field.is_empty()).then_some(field);
        self
    }

    /// Adds an extension member a client can read instead of parsing `detail` (the open
    /// ride's `ride_id`, the `available` balance). The standard members cannot be replaced.
    pub fn with_extension(mut self, name: &str, value: impl Into<serde_json::Value>) -> Self {
        const STANDARD: [&str; 7] = ["type", "title", "status", "code", "detail", "field", "request_id"];
        if !STANDARD.contains(&name) {
            self.extensions.insert(name.to_string(), value.into());
        }
        self
    }

    /// An extension member, if this problem has it.
    pub fn extension(&self, name: &str) -> Option<&serde_json::Value> {
        self.extensions.get(name)
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_seconds = Some(seconds.max(1));
        self
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    pub fn detail(&self) -> &str {
        &self.detail
    }

    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// The problem document as JSON, for transports other than an HTTP response (a
    /// WebSocket `error` frame).
    pub fn to_json(&self) -> serde_json::Value {
        let mut body = serde_json::to_value(self.body()).unwrap_or(serde_json::Value::Null);
        if let serde_json::Value::Object(members) = &mut body {
            for (name, value) in &self.extensions {
                members.entry(name.clone()).or_insert_with(|| value.clone());
            }
        }
        body
    }

    fn body(&self) -> ProblemSchema {
        ProblemSchema {
            r#type: format!("urn:plaza:problem:{}", self.code.as_str()),
            title: self.code.title().to_string(),
            status: self.code.status().as_u16(),
            code: self.code.as_str().to_string(),
            detail: self.detail.clone(),
            field: self.field.clone(),
            request_id: crate::request_id::current_opt(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.detail)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.to_json()).unwrap_or_default();
        let mut response = (self.code.status(), body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(seconds) = self.retry_after_seconds {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// The problem document as it appears on the wire (RFC 9457 plus `code`, `field` and
/// `request_id`), with a code's typed extension members where it has them: `ride_id`
/// (`ride_already_open`), `available` and `requested` (`insufficient_funds`), `limit` and
/// `remaining` (`topup_limit_exceeded`), `limit` and `bought` (`limit_reached`),
/// `starts_at` (`sale_not_started`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Problem)]
pub struct ProblemSchema {
    /// A URI naming the kind of problem: `urn:plaza:problem:<code>`.
    pub r#type: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// Stable, snake_case, for clients to branch on.
    pub code: String,
    /// A human explanation of this occurrence.
    pub detail: String,
    /// The offending field, for `invalid_field`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The id of the request, to quote when reporting a problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn an_extension_member_is_on_the_wire_and_never_replaces_a_standard_one() {
        let problem = Problem::new(ErrorCode::InsufficientFunds, "short")
            .with_extension("available", 5)
            .with_extension("code", "spoofed");
        let body = problem.to_json();
        assert_eq!(body["available"], 5);
        assert_eq!(body["code"], "insufficient_funds");
        assert_eq!(problem.extension("available"), Some(&serde_json::json!(5)));
    }

    #[test]
    fn every_code_has_a_distinct_name_and_an_error_status() {
        let names: HashSet<_> = ErrorCode::ALL.iter().map(|code| code.as_str()).collect();
        assert_eq!(names.len(), ErrorCode::ALL.len());
        for code in ErrorCode::ALL {
            assert!(code.status().is_client_error() || code.status().is_server_error());
            assert!(code.as_str().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
    }
}
