//! The coffee server's calls to Plaza: the code exchange, userinfo, the client-credentials
//! token and pay orders. Every call has a time-out and reads at most
//! [`RESPONSE_BYTES_MAX`] of the answer.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// The longest any one call to Plaza may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Plaza's answers here are a few hundred bytes; anything far larger is not Plaza's.
const RESPONSE_BYTES_MAX: usize = 64 * 1024;
/// A cached app token is renewed this long before it expires, so a call never starts
/// with a token that dies on the way.
const TOKEN_RENEW_MARGIN: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum PlazaError {
    /// Plaza answered, but not with success: its status and its `code` or `error`.
    #[error("Plaza answered {status}: {code}")]
    Refused { status: u16, code: String },
    /// Plaza could not be reached, timed out, or sent something that is not the answer.
    #[error("calling Plaza: {0}")]
    Unreachable(String),
}

/// What the token endpoint answers (RFC 6749 §5.1).
#[derive(Debug, Deserialize)]
pub struct TokenAnswer {
    pub access_token: String,
    pub expires_in: u64,
    #[serde(default)]
    pub id_token: Option<String>,
}

/// `/oauth/userinfo`: `sub` is this app's pairwise id of the user, `name` and `picture`
/// come with the `profile` scope.
#[derive(Debug, Clone, Deserialize)]
pub struct UserInfo {
    pub sub: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub picture: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct NewPayOrder<'a> {
    pub out_trade_no: &'a str,
    pub user_sub: &'a str,
    pub amount: i64,
    pub currency: &'a str,
    pub description: &'a str,
}

/// The part of Plaza's `pay_order` this app reads.
#[derive(Debug, Clone, Deserialize)]
pub struct PayOrder {
    pub id: String,
    pub out_trade_no: String,
    pub amount: i64,
    pub currency: String,
    pub status: String,
}

/// Plaza as this app's server sees it: its URL and the app's credentials.
#[derive(Debug)]
pub struct Plaza {
    base_url: String,
    client_id: String,
    client_secret: String,
    http: reqwest::Client,
    app_token: std::sync::Mutex<Option<(String, Instant)>>,
}

impl Plaza {
    pub fn new(base_url: &str, client_id: &str, client_secret: &str) -> Result<Self, PlazaError> {
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .connect_timeout(CALL_TIMEOUT)
            // Plaza's endpoints answer directly; a redirect would be a misconfiguration.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| PlazaError::Unreachable(format!("building the HTTP client: {error}")))?;
        Ok(Self {
            base_url: base_url.trim_end_matches('/').to_string(),
            client_id: client_id.to_string(),
            client_secret: client_secret.to_string(),
            http,
            app_token: std::sync::Mutex::new(None),
        })
    }

    /// Trades the code `Plaza.login()` gave the page for the user's tokens, proving with
    /// the PKCE verifier that this server is the one that asked (RFC 7636 §4.5).
    pub async fn exchange_code(
        &self,
        code: &str,
        code_verifier: &str,
        redirect_uri: &str,
    ) -> Result<TokenAnswer, PlazaError> {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("code_verifier", code_verifier),
            ("redirect_uri", redirect_uri),
        ];
        self.token_request(&form).await
    }

    /// The signed-in user's profile, read with their access token.
    pub async fn userinfo(&self, access_token: &str) -> Result<UserInfo, PlazaError> {
        let request = self.http.get(self.url("/api/v1/oauth/userinfo")).bearer_auth(access_token);
        read_json(request.send().await).await
    }

    /// Creates a pay order with the app's own token. The idempotency key makes a retry of
    /// this call (after a time-out, say) return the first order instead of a second one.
    pub async fn create_pay_order(
        &self,
        order: &NewPayOrder<'_>,
        idempotency_key: &str,
    ) -> Result<PayOrder, PlazaError> {
        let (mut renewed, mut resent) = (false, false);
        loop {
            let token = self.app_token(renewed).await?;
            let request = self
                .http
                .post(self.url("/api/v1/pay/orders"))
                .bearer_auth(&token)
                .header("idempotency-key", idempotency_key)
                .json(order);
            match read_json(request.send().await).await {
                // A revoked or expired token: fetch a new one once.
                Err(PlazaError::Refused { status: 401, .. }) if !renewed => renewed = true,
                // Lost on the way (the order may exist): sent again once with the same key,
                // which is what the key is for.
                Err(PlazaError::Unreachable(_)) if !resent => resent = true,
                answer => return answer,
            }
        }
    }

    /// The client-credentials token (scope `payments`), cached until shortly before it
    /// expires; `renew` fetches a new one whatever the cache holds.
    async fn app_token(&self, renew: bool) -> Result<String, PlazaError> {
        if !renew {
            let cached = self.app_token.lock().map_err(|_| poisoned())?.clone();
            if let Some((token, renew_at)) = cached {
                if Instant::now() < renew_at {
                    return Ok(token);
                }
            }
        }
        let answer: TokenAnswer =
            self.token_request(&[("grant_type", "client_credentials"), ("scope", "payments")]).await?;
        let lifetime = Duration::from_secs(answer.expires_in).saturating_sub(TOKEN_RENEW_MARGIN);
        let renew_at = Instant::now() + lifetime;
        *self.app_token.lock().map_err(|_| poisoned())? = Some((answer.access_token.clone(), renew_at));
        Ok(answer.access_token)
    }

    /// A token endpoint call, authenticated with HTTP Basic (`client_secret_basic`).
    async fn token_request<T: DeserializeOwned>(&self, form: &[(&str, &str)]) -> Result<T, PlazaError> {
        let request = self
            .http
            .post(self.url("/api/v1/oauth/token"))
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .form(form);
        read_json(request.send().await).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }
}

fn poisoned() -> PlazaError {
    PlazaError::Unreachable("the token cache's lock was poisoned".to_string())
}

/// Reads a JSON answer of at most [`RESPONSE_BYTES_MAX`]; a non-2xx answer becomes
/// `Refused` with Plaza's `code` (problem+json) or `error` (OAuth's JSON).
async fn read_json<T: DeserializeOwned>(sent: reqwest::Result<reqwest::Response>) -> Result<T, PlazaError> {
    let mut response = sent.map_err(|error| PlazaError::Unreachable(error.without_url().to_string()))?;
    let status = response.status();
    let mut body = Vec::new();
    while let Some(chunk) =
        response.chunk().await.map_err(|error| PlazaError::Unreachable(error.without_url().to_string()))?
    {
        if body.len() + chunk.len() > RESPONSE_BYTES_MAX {
            return Err(PlazaError::Unreachable(format!("an answer longer than {RESPONSE_BYTES_MAX} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    if !status.is_success() {
        #[derive(Deserialize)]
        struct Failure {
            code: Option<String>,
            error: Option<String>,
        }
        let failure = serde_json::from_slice::<Failure>(&body).ok();
        let code = failure.and_then(|failure| failure.code.or(failure.error)).unwrap_or_else(|| "unknown".into());
        return Err(PlazaError::Refused { status: status.as_u16(), code });
    }
    serde_json::from_slice(&body).map_err(|error| PlazaError::Unreachable(format!("an unexpected answer: {error}")))
}
