//! The accounts HTTP API (API.md, "Accounts"): wire types, handlers, the [`CurrentUser`]
//! extractor, and the one mapping from [`AccountsError`] to problems.

use crate::model::{ContactStatus, User};
use crate::profiles::{FollowList, ProfileChange};
use crate::service::{Accounts, AccountsError, Contact, Session};
use crate::sessions::{Authenticated, SessionId};
use axum::extract::{FromRef, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use plaza_http::{
    authorization_credentials, page_limit, ApiJson, ApiQuery, ClientAddress, ErrorCode, PageParams, Problem,
};
use plaza_kernel::Page;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The accounts routes, relative to `/api/v1`.
pub fn router(accounts: Accounts) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(logout_everywhere))
        .routes(routes!(change_password))
        .routes(routes!(me, update_me))
        .routes(routes!(user_by_id))
        .routes(routes!(follow, unfollow))
        .routes(routes!(followers))
        .routes(routes!(following))
        .routes(routes!(search_users))
        .routes(routes!(request_contact, list_contacts))
        .routes(routes!(accept_contact))
        .routes(routes!(remove_contact))
        .with_state(accounts)
}

/// The authenticated caller. Taking this as an argument makes a handler require a valid
/// `Authorization: Bearer <token>`; without one the request is a 401 `unauthenticated`.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub user: User,
    pub is_admin: bool,
    pub session: SessionId,
    token: String,
}

impl<S> FromRequestParts<S> for CurrentUser
where
    Accounts: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let accounts = Accounts::from_ref(state);
        let token = authorization_credentials(&parts.headers, "bearer").map(str::to_string).ok_or_else(|| {
            Problem::new(ErrorCode::Unauthenticated, "send Authorization: Bearer <token> from login or register")
        })?;
        let Authenticated { user, is_admin, session } = accounts.authenticate(&token).await?;
        Ok(CurrentUser { user, is_admin, session, token })
    }
}

impl CurrentUser {
    /// The caller as the accounts service names them.
    pub fn authenticated(&self) -> Authenticated {
        Authenticated { user: self.user.clone(), is_admin: self.is_admin, session: self.session.clone() }
    }
}

/// The caller, from `Authorization: Bearer` or, where a browser cannot set headers (an
/// `<img src>`, `new WebSocket(url)`), from `?token=`. Only routes that browsers load that
/// way take this; request logs record paths without query strings, so the token stays out
/// of them.
#[derive(Debug, Clone)]
pub struct HeaderOrQueryUser(pub User);

impl<S> FromRequestParts<S> for HeaderOrQueryUser
where
    Accounts: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(HeaderOrQueryUser(SocketCaller::from_request_parts(parts, state).await?.0.user))
    }
}

/// [`HeaderOrQueryUser`] with the session too, for what must end when the session does
/// (the WebSocket: see [`Accounts::watch_session`]).
#[derive(Debug, Clone)]
pub struct SocketCaller(pub Authenticated);

impl<S> FromRequestParts<S> for SocketCaller
where
    Accounts: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if parts.headers.contains_key(header::AUTHORIZATION) {
            return Ok(SocketCaller(CurrentUser::from_request_parts(parts, state).await?.authenticated()));
        }
        let token = parts
            .uri
            .query()
            .and_then(|query| query.split('&').find_map(|pair| pair.strip_prefix("token=")))
            .ok_or_else(|| Problem::new(ErrorCode::Unauthenticated, "send a bearer token or ?token="))?;
        Ok(SocketCaller(Accounts::from_ref(state).authenticate(token).await?))
    }
}

impl From<AccountsError> for Problem {
    fn from(error: AccountsError) -> Self {
        match error {
            AccountsError::InvalidField { field, reason } => Problem::invalid_field(field, reason),
            AccountsError::UsernameTaken(name) => {
                Problem::new(ErrorCode::UsernameTaken, format!("the username {name} is taken")).with_field("username")
            }
            AccountsError::InvalidCredentials => {
                Problem::new(ErrorCode::InvalidCredentials, "wrong username or password")
            }
            AccountsError::Unauthenticated => {
                Problem::new(ErrorCode::Unauthenticated, "the session token is unknown, expired or revoked")
            }
            AccountsError::RateLimited { retry_after } => {
                Problem::new(ErrorCode::RateLimited, "too many attempts; wait before trying again")
                    .with_retry_after(retry_after.as_secs_f64().ceil() as u64)
            }
            AccountsError::UserNotFound => Problem::new(ErrorCode::UserNotFound, "no such user"),
            AccountsError::CannotContactSelf => {
                Problem::new(ErrorCode::CannotContactSelf, "you cannot add yourself as a contact").with_field("user_id")
            }
            AccountsError::ContactNotFound => {
                Problem::new(ErrorCode::ContactNotFound, "no contact or contact request with that user")
            }
            AccountsError::CannotFollowSelf => Problem::new(ErrorCode::CannotFollowSelf, "you cannot follow yourself"),
            AccountsError::Media(error) => Problem::internal(&error),
            AccountsError::Database(error) if plaza_store::is_unavailable(&error) => {
                tracing::warn!(request_id = %plaza_http::request_id::current(), "database unavailable: {error}");
                Problem::new(ErrorCode::Unavailable, "the database is not reachable; try again shortly")
            }
            AccountsError::Database(error) => Problem::internal(&error),
            AccountsError::Hashing(error) => Problem::internal(&error),
            AccountsError::Bus(error) => Problem::internal(&error),
        }
    }
}

// ---- wire types ----

/// A user's public profile.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = User)]
pub struct UserBody {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub avatar_url: Option<String>,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// At most 160 characters; empty when unset.
    pub bio: String,
    pub followers_count: i64,
    pub following_count: i64,
    /// Whether the caller follows this user; present where the caller is known to the
    /// answer (profiles and follow lists), absent where a user is embedded in another
    /// object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub followed_by_me: Option<bool>,
}

impl From<User> for UserBody {
    fn from(user: User) -> Self {
        Self {
            id: user.id,
            username: user.username,
            display_name: user.display_name,
            avatar_url: user.avatar_url,
            created_at: user.created_at.to_rfc3339(),
            bio: user.bio,
            followers_count: user.followers_count,
            following_count: user.following_count,
            followed_by_me: None,
        }
    }
}

impl UserBody {
    /// The profile as `followed` says the caller sees it.
    pub fn seen_by(user: User, followed: bool) -> Self {
        Self { followed_by_me: Some(followed), ..Self::from(user) }
    }
}

/// The signed-in user's own profile: the public profile plus their roles.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Me)]
pub struct MeBody {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub avatar_url: Option<String>,
    pub created_at: String,
    pub bio: String,
    pub followers_count: i64,
    pub following_count: i64,
    /// `admin` for accounts an operator granted it (`plaza admin grant`).
    pub roles: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RegisterRequest {
    /// 3–32 characters of a–z, 0–9 and `_`; case-insensitive.
    #[schema(min_length = 3, max_length = 32, pattern = "^[A-Za-z0-9_]{3,32}$")]
    pub username: String,
    /// At least 8 characters.
    #[schema(min_length = 8)]
    pub password: String,
    /// 1–64 characters; defaults to the username.
    pub display_name: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

/// A new session.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuthResponse {
    /// Send as `Authorization: Bearer <token>`. Shown once; the server keeps only a digest.
    pub token: String,
    pub user: UserBody,
}

impl From<Session> for AuthResponse {
    fn from(session: Session) -> Self {
        Self { token: session.token, user: session.user.into() }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserPage {
    pub items: Vec<UserBody>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct SearchParams {
    /// Prefix of a username or display name, 1–64 characters.
    #[param(min_length = 1, max_length = 64)]
    pub q: String,
    /// 1–200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ContactRequestBody {
    pub user_id: String,
}

/// Where a contact relationship stands, from the caller's side.
#[derive(Debug, Serialize, Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum ContactStatusBody {
    /// The caller asked; the other has not answered.
    Outgoing,
    /// The other asked; the caller has not answered.
    Incoming,
    Accepted,
}

impl From<ContactStatus> for ContactStatusBody {
    fn from(status: ContactStatus) -> Self {
        match status {
            ContactStatus::Outgoing => Self::Outgoing,
            ContactStatus::Incoming => Self::Incoming,
            ContactStatus::Accepted => Self::Accepted,
        }
    }
}

impl From<ContactStatusBody> for ContactStatus {
    fn from(status: ContactStatusBody) -> Self {
        match status {
            ContactStatusBody::Outgoing => Self::Outgoing,
            ContactStatusBody::Incoming => Self::Incoming,
            ContactStatusBody::Accepted => Self::Accepted,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Contact)]
pub struct ContactBody {
    pub user: UserBody,
    pub status: ContactStatusBody,
    pub updated_at: String,
}

impl From<Contact> for ContactBody {
    fn from(contact: Contact) -> Self {
        Self { user: contact.user.into(), status: contact.status.into(), updated_at: contact.updated_at.to_rfc3339() }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ContactPage {
    pub items: Vec<ContactBody>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ContactParams {
    /// Only contacts in this state.
    pub status: Option<ContactStatusBody>,
    /// 1–200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

fn user_page(page: Page<User>) -> UserPage {
    let page = page.map(UserBody::from);
    UserPage { items: page.items, next_cursor: page.next_cursor }
}

// ---- handlers ----

/// Create an account and sign in.
#[utoipa::path(post, path = "/auth/register", tag = "accounts", request_body = RegisterRequest,
    responses((status = 201, description = "Registered and signed in", body = AuthResponse)))]
async fn register(
    State(accounts): State<Accounts>,
    ClientAddress(address): ClientAddress,
    ApiJson(request): ApiJson<RegisterRequest>,
) -> Result<(StatusCode, axum::Json<AuthResponse>), Problem> {
    let session =
        accounts.register(&address, &request.username, &request.password, request.display_name.as_deref()).await?;
    Ok((StatusCode::CREATED, axum::Json(session.into())))
}

/// Sign in with a username and password.
#[utoipa::path(post, path = "/auth/login", tag = "accounts", request_body = LoginRequest,
    responses((status = 200, description = "Signed in", body = AuthResponse)))]
async fn login(
    State(accounts): State<Accounts>,
    ClientAddress(address): ClientAddress,
    ApiJson(request): ApiJson<LoginRequest>,
) -> Result<axum::Json<AuthResponse>, Problem> {
    let session = accounts.login(&address, &request.username, &request.password).await?;
    Ok(axum::Json(session.into()))
}

/// Revoke the session whose token authenticates this request.
#[utoipa::path(post, path = "/auth/logout", tag = "accounts", security(("bearer" = [])),
    responses((status = 204, description = "Signed out; the token no longer works")))]
async fn logout(State(accounts): State<Accounts>, current: CurrentUser) -> Result<StatusCode, Problem> {
    accounts.logout(&current.token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revoke every session of the caller, this one too, on every node; their sockets close.
#[utoipa::path(post, path = "/auth/logout-everywhere", tag = "accounts", security(("bearer" = [])),
    responses((status = 204, description = "Signed out everywhere; no token of this user works any more")))]
async fn logout_everywhere(State(accounts): State<Accounts>, current: CurrentUser) -> Result<StatusCode, Problem> {
    accounts.logout_everywhere(&current.user).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChangePasswordRequest {
    pub current_password: String,
    /// At least 8 characters.
    #[schema(min_length = 8)]
    pub new_password: String,
}

/// Replace the caller's password; every other session of theirs ends (this one stays).
#[utoipa::path(post, path = "/auth/password", tag = "accounts", security(("bearer" = [])),
    request_body = ChangePasswordRequest,
    responses((status = 204, description = "Changed; other sessions are signed out")))]
async fn change_password(
    State(accounts): State<Accounts>,
    ClientAddress(address): ClientAddress,
    current: CurrentUser,
    ApiJson(request): ApiJson<ChangePasswordRequest>,
) -> Result<StatusCode, Problem> {
    accounts
        .change_password(&address, &current.authenticated(), &request.current_password, &request.new_password)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The signed-in user.
#[utoipa::path(get, path = "/me", tag = "accounts", security(("bearer" = [])),
    responses((status = 200, description = "The caller's profile", body = MeBody)))]
async fn me(current: CurrentUser) -> axum::Json<MeBody> {
    axum::Json(me_body(current.user, current.is_admin))
}

fn me_body(user: User, is_admin: bool) -> MeBody {
    let roles = if is_admin { vec!["admin".to_string()] } else { Vec::new() };
    MeBody {
        id: user.id,
        username: user.username,
        display_name: user.display_name,
        avatar_url: user.avatar_url,
        created_at: user.created_at.to_rfc3339(),
        bio: user.bio,
        followers_count: user.followers_count,
        following_count: user.following_count,
        roles,
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMeRequest {
    /// 1–64 characters.
    #[schema(min_length = 1, max_length = 64)]
    pub display_name: Option<String>,
    /// At most 160 characters; an empty string clears it.
    #[schema(max_length = 160)]
    pub bio: Option<String>,
    /// An image the caller uploaded (`POST /media`); it becomes the avatar, which every
    /// signed-in user may then fetch.
    pub avatar_media_id: Option<String>,
}

/// Change the caller's display name, bio or avatar.
#[utoipa::path(patch, path = "/me", tag = "accounts", security(("bearer" = [])), request_body = UpdateMeRequest,
    responses((status = 200, description = "The profile as it now is", body = MeBody)))]
async fn update_me(
    State(accounts): State<Accounts>,
    current: CurrentUser,
    ApiJson(request): ApiJson<UpdateMeRequest>,
) -> Result<axum::Json<MeBody>, Problem> {
    let change = ProfileChange {
        display_name: request.display_name,
        bio: request.bio,
        avatar_media_id: request.avatar_media_id,
    };
    let user = accounts.update_profile(&current.user, change).await?;
    Ok(axum::Json(me_body(user, current.is_admin)))
}

/// Follow a user: one-way and public; they get `follow.new`. Following twice is one follow.
#[utoipa::path(post, path = "/users/{id}/follow", tag = "accounts", security(("bearer" = [])),
    params(("id" = String, Path, description = "Whom to follow")),
    responses((status = 204, description = "Following")))]
async fn follow(
    State(accounts): State<Accounts>,
    current: CurrentUser,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    accounts.follow(&current.user, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Stop following a user (also when not following them).
#[utoipa::path(delete, path = "/users/{id}/follow", tag = "accounts", security(("bearer" = [])),
    params(("id" = String, Path, description = "Whom to unfollow")),
    responses((status = 204, description = "Not following")))]
async fn unfollow(
    State(accounts): State<Accounts>,
    current: CurrentUser,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    accounts.unfollow(&current.user, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who follows a user, most recent first.
#[utoipa::path(get, path = "/users/{id}/followers", tag = "accounts", security(("bearer" = [])),
    params(("id" = String, Path, description = "User id"), PageParams),
    responses((status = 200, description = "Followers", body = UserPage)))]
async fn followers(
    State(accounts): State<Accounts>,
    current: CurrentUser,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<axum::Json<UserPage>, Problem> {
    follow_list(&accounts, &current.user, &id, FollowList::Followers, params).await
}

/// Whom a user follows, most recent first.
#[utoipa::path(get, path = "/users/{id}/following", tag = "accounts", security(("bearer" = [])),
    params(("id" = String, Path, description = "User id"), PageParams),
    responses((status = 200, description = "Followed users", body = UserPage)))]
async fn following(
    State(accounts): State<Accounts>,
    current: CurrentUser,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<axum::Json<UserPage>, Problem> {
    follow_list(&accounts, &current.user, &id, FollowList::Following, params).await
}

async fn follow_list(
    accounts: &Accounts,
    me: &User,
    user_id: &str,
    list: FollowList,
    params: PageParams,
) -> Result<axum::Json<UserPage>, Problem> {
    let limit = page_limit(params.limit)?;
    let page = accounts.follow_list(user_id, list, limit, params.cursor.as_deref()).await?;
    let ids: Vec<String> = page.items.iter().map(|user| user.id.clone()).collect();
    let followed = accounts.followed_among(&me.id, &ids).await?;
    let page = page.map(|user| {
        let is_followed = followed.contains(&user.id);
        UserBody::seen_by(user, is_followed)
    });
    Ok(axum::Json(UserPage { items: page.items, next_cursor: page.next_cursor }))
}

/// A user's public profile.
#[utoipa::path(get, path = "/users/{id}", tag = "accounts", security(("bearer" = [])),
    params(("id" = String, Path, description = "User id")),
    responses((status = 200, description = "The profile", body = UserBody)))]
async fn user_by_id(
    State(accounts): State<Accounts>,
    current: CurrentUser,
    Path(id): Path<String>,
) -> Result<axum::Json<UserBody>, Problem> {
    let user = accounts.user(&id).await?;
    let followed = accounts.follows(&current.user.id, &user.id).await?;
    Ok(axum::Json(UserBody::seen_by(user, followed)))
}

/// Find users by the start of their username or display name.
#[utoipa::path(get, path = "/users", tag = "accounts", security(("bearer" = [])), params(SearchParams),
    responses((status = 200, description = "Matching users, by username", body = UserPage)))]
async fn search_users(
    State(accounts): State<Accounts>,
    _current: CurrentUser,
    ApiQuery(params): ApiQuery<SearchParams>,
) -> Result<axum::Json<UserPage>, Problem> {
    let limit = page_limit(params.limit)?;
    let page = accounts.search(&params.q, limit, params.cursor.as_deref()).await?;
    Ok(axum::Json(user_page(page)))
}

/// Ask someone to be a contact, or accept their pending request.
#[utoipa::path(post, path = "/contacts", tag = "accounts", security(("bearer" = [])), request_body = ContactRequestBody,
    responses(
        (status = 201, description = "A new request was sent", body = ContactBody),
        (status = 200, description = "Already requested or already contacts, or their request was accepted", body = ContactBody)))]
async fn request_contact(
    State(accounts): State<Accounts>,
    current: CurrentUser,
    ApiJson(request): ApiJson<ContactRequestBody>,
) -> Result<impl IntoResponse, Problem> {
    let (contact, created) = accounts.request_contact(&current.user, &request.user_id).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, axum::Json(ContactBody::from(contact))))
}

/// The caller's contacts and pending requests, by username.
#[utoipa::path(get, path = "/contacts", tag = "accounts", security(("bearer" = [])), params(ContactParams),
    responses((status = 200, description = "Contacts and requests", body = ContactPage)))]
async fn list_contacts(
    State(accounts): State<Accounts>,
    current: CurrentUser,
    ApiQuery(params): ApiQuery<ContactParams>,
) -> Result<axum::Json<ContactPage>, Problem> {
    let limit = page_limit(params.limit)?;
    let page = accounts.contacts(&current.user, params.status.map(Into::into), limit, params.cursor.as_deref()).await?;
    let page = page.map(ContactBody::from);
    Ok(axum::Json(ContactPage { items: page.items, next_cursor: page.next_cursor }))
}

/// Accept a pending contact request from this user.
#[utoipa::path(post, path = "/contacts/{user_id}/accept", tag = "accounts", security(("bearer" = [])),
    params(("user_id" = String, Path, description = "Who sent the request")),
    responses((status = 200, description = "Now contacts", body = ContactBody)))]
async fn accept_contact(
    State(accounts): State<Accounts>,
    current: CurrentUser,
    Path(user_id): Path<String>,
) -> Result<axum::Json<ContactBody>, Problem> {
    Ok(axum::Json(accounts.accept_contact(&current.user, &user_id).await?.into()))
}

/// Remove a contact, decline their request, or withdraw yours.
#[utoipa::path(delete, path = "/contacts/{user_id}", tag = "accounts", security(("bearer" = [])),
    params(("user_id" = String, Path, description = "The other user")),
    responses((status = 204, description = "Removed on both sides")))]
async fn remove_contact(
    State(accounts): State<Accounts>,
    current: CurrentUser,
    Path(user_id): Path<String>,
) -> Result<StatusCode, Problem> {
    accounts.remove_contact(&current.user, &user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
