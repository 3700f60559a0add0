//! What a developer sends when registering an app, checked once (parse, don't validate).

use crate::service::MiniAppError;

pub const NAME_MAX_CHARS: usize = 60;
pub const DESCRIPTION_MAX_CHARS: usize = 500;
pub const URL_MAX_CHARS: usize = 2048;
pub const REDIRECT_URIS_MAX: usize = 10;
/// Apps one developer may register.
pub const APPS_PER_DEVELOPER_MAX: i64 = 20;
/// The scopes an app may ask for.
pub const SCOPES: &[&str] = &["openid", "profile", "payments"];

/// A URL an app is reached at: `https://`, or `http://` on a loopback host for
/// development; no fragment (RFC 6749 §3.1.2), no white space or control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppUrl(String);

impl AppUrl {
    pub fn parse(value: &str, field: &str) -> Result<Self, MiniAppError> {
        let bad = |reason: &str| MiniAppError::InvalidField { field: field.to_string(), reason: reason.to_string() };
        if value.is_empty() || value.chars().count() > URL_MAX_CHARS {
            return Err(bad("1 to 2048 characters"));
        }
        if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("a URL has no white space or control characters"));
        }
        if value.contains('#') {
            return Err(bad("a URL here cannot have a fragment"));
        }
        let rest = if let Some(rest) = value.strip_prefix("https://") {
            rest
        } else if let Some(rest) = value.strip_prefix("http://") {
            let host = rest.split(['/', '?']).next().unwrap_or("");
            let host_name = host.rsplit_once(':').map_or(host, |(name, _)| name);
            if !matches!(host_name, "localhost" | "127.0.0.1" | "[::1]") {
                return Err(bad("must be https:// (http:// only on a loopback host)"));
            }
            rest
        } else {
            return Err(bad("must be https:// (http:// only on a loopback host)"));
        };
        let host = rest.split(['/', '?']).next().unwrap_or("");
        if host.is_empty() || host.contains('@') {
            return Err(bad("needs a host and no user information"));
        }
        Ok(Self(value.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An app's registration, checked.
#[derive(Debug, Clone)]
pub struct Registration {
    pub name: String,
    pub description: String,
    pub home_url: AppUrl,
    pub redirect_uris: Vec<AppUrl>,
    pub webhook_url: Option<AppUrl>,
    pub scopes: Vec<String>,
}

impl Registration {
    pub fn parse(
        name: &str,
        description: &str,
        home_url: &str,
        redirect_uris: &[String],
        webhook_url: Option<&str>,
        scopes: &[String],
    ) -> Result<Self, MiniAppError> {
        let name = text(name, "name", NAME_MAX_CHARS, false)?;
        let description = text(description, "description", DESCRIPTION_MAX_CHARS, true)?;
        let home_url = AppUrl::parse(home_url, "home_url")?;
        if redirect_uris.is_empty() || redirect_uris.len() > REDIRECT_URIS_MAX {
            return Err(invalid("redirect_uris", "1 to 10 redirect URIs"));
        }
        let mut parsed_uris: Vec<AppUrl> = Vec::with_capacity(redirect_uris.len());
        for (index, uri) in redirect_uris.iter().enumerate() {
            let uri = AppUrl::parse(uri, &format!("redirect_uris/{index}"))?;
            if parsed_uris.contains(&uri) {
                return Err(invalid(format!("redirect_uris/{index}"), "listed twice"));
            }
            parsed_uris.push(uri);
        }
        let webhook_url = webhook_url.map(|url| AppUrl::parse(url, "webhook_url")).transpose()?;
        if scopes.is_empty() {
            return Err(invalid("scopes", "at least one of openid, profile, payments"));
        }
        let mut parsed_scopes: Vec<String> = Vec::with_capacity(scopes.len());
        for (index, scope) in scopes.iter().enumerate() {
            if !SCOPES.contains(&scope.as_str()) {
                return Err(invalid(format!("scopes/{index}"), "one of openid, profile, payments"));
            }
            if !parsed_scopes.contains(scope) {
                parsed_scopes.push(scope.clone());
            }
        }
        Ok(Self { name, description, home_url, redirect_uris: parsed_uris, webhook_url, scopes: parsed_scopes })
    }
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> MiniAppError {
    MiniAppError::InvalidField { field: field.into(), reason: reason.into() }
}

fn text(value: &str, field: &str, max: usize, allow_empty: bool) -> Result<String, MiniAppError> {
    let value = value.trim();
    if (!allow_empty && value.is_empty()) || value.chars().count() > max {
        let least = if allow_empty { 0 } else { 1 };
        return Err(invalid(field, format!("{least} to {max} characters")));
    }
    if value.chars().any(|c| c.is_control() && c != '\n') || plaza_kernel::text::has_bidi_control(value) {
        return Err(invalid(field, "no control characters"));
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http_urls_without_fragments_are_taken() {
        assert!(AppUrl::parse("https://coffee.example/cb", "f").is_ok());
        assert!(AppUrl::parse("http://127.0.0.1:8080/cb", "f").is_ok());
        assert!(AppUrl::parse("http://localhost/cb", "f").is_ok());
        for bad in
            ["http://coffee.example/cb", "https://a.example/cb#x", "ftp://a", "https://", "https://u@h/", "https://a b"]
        {
            assert!(AppUrl::parse(bad, "f").is_err(), "{bad}");
        }
    }
}
