//! Google's OAuth2 token endpoint, as Vertex AI service accounts use it.
//!
//! `POST /token` exchanges a JWT-bearer assertion (RS256, signed with the service account's
//! key) for an access token `mock-token-<n>`. The assertion is checked against the public key
//! a test registers first with `POST /__mock/oauth/key` (body: the PEM public key; an optional
//! `x-mock-token-ttl` header sets the lifetime of the tokens issued from then on).
//! `GET /tokeninfo?access_token=…` answers like Google's, `GET /__mock/oauth/tokens` lists the
//! tokens issued, `DELETE /__mock/oauth` forgets the key and the tokens. Other mocks check
//! `Authorization: Bearer …` with [`issued`].

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use axum::body::Bytes;
use axum::extract::Query;
use axum::http::header::HOST;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use rsa::RsaPublicKey;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::record::lock;
use crate::reply;

/// `grant_type` of the JWT-bearer exchange.
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The scope Vertex AI needs.
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Token lifetime when nothing else is set, seconds.
const DEFAULT_TTL: u64 = 3600;
/// Longest assertion lifetime Google accepts (`exp - iat`), seconds.
const MAX_ASSERTION_LIFETIME: u64 = 3600;
/// Clock skew tolerated for `iat`, seconds.
const SKEW: u64 = 60;
/// Google's answer to an assertion outside its time window.
const TIMEFRAME: &str = "Invalid JWT: Token must be a short-lived token (60 minutes) and in a \
    reasonable timeframe. Check your iat and exp values in the JWT claim.";
/// Header setting the token lifetime (on the key registration or on one exchange).
const TTL_HEADER: &str = "x-mock-token-ttl";

/// An issued token.
#[derive(Clone, Debug, PartialEq)]
struct Issued {
    /// The service account (`iss`).
    email: String,
    /// Granted scope.
    scope: String,
    /// Seconds since the epoch.
    expires_at: u64,
}

#[derive(Default)]
struct State {
    key: Option<VerifyingKey<Sha256>>,
    ttl: Option<u64>,
    issued: HashMap<String, Issued>,
    /// Tokens issued so far (never reset, so a forgotten token never comes back).
    counter: u64,
}

/// The token endpoint's state: the registered key and the tokens issued.
#[derive(Default)]
pub struct OAuth {
    state: Mutex<State>,
}

/// An OAuth error answer: `{"error", "error_description"}` with status 400.
#[derive(Debug, PartialEq)]
pub struct OAuthError {
    /// `invalid_request`, `unsupported_grant_type`, `invalid_grant`, `invalid_token`.
    pub code: &'static str,
    /// What was wrong.
    pub description: String,
}

impl OAuthError {
    fn new(code: &'static str, description: impl Into<String>) -> OAuthError {
        OAuthError {
            code,
            description: description.into(),
        }
    }

    fn grant(description: impl Into<String>) -> OAuthError {
        OAuthError::new("invalid_grant", description)
    }

    fn reply(&self) -> Response {
        reply::json(
            StatusCode::BAD_REQUEST,
            json!({"error": self.code, "error_description": self.description}),
        )
    }
}

/// The one token endpoint of the mock.
static OAUTH: LazyLock<OAuth> = LazyLock::new(OAuth::default);

/// Whether `token` was issued by this mock and has not expired.
#[allow(dead_code)] // for the provider mocks that check `Authorization: Bearer`
pub fn issued(token: &str) -> bool {
    OAUTH.lookup(token, reply::unix_now()).is_some()
}

/// The token endpoint and its control routes.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/token", post(token))
        .route("/tokeninfo", get(tokeninfo))
        .route("/__mock/oauth/key", post(register))
        .route("/__mock/oauth/tokens", get(tokens))
        .route("/__mock/oauth", delete(reset))
}

/// Decodes `application/x-www-form-urlencoded` (first value of each name wins); `None` on a
/// bad `%` escape or non-UTF-8 text.
pub fn parse_form(body: &[u8]) -> Option<HashMap<String, String>> {
    let mut out = HashMap::new();
    for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let mut halves = pair.splitn(2, |b| *b == b'=');
        let name = halves.next().unwrap_or_default();
        let value = halves.next().unwrap_or_default();
        out.entry(percent_decode(name)?)
            .or_insert(percent_decode(value)?);
    }
    Some(out)
}

fn percent_decode(text: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = (*bytes.next()? as char).to_digit(16)?;
                let lo = (*bytes.next()? as char).to_digit(16)?;
                out.push(u8::try_from(hi * 16 + lo).ok()?);
            }
            _ => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

/// Whether `aud` names this endpoint: `http(s)://<host><path>` (any host when the request
/// carried none).
pub fn audience_ok(aud: &str, host: Option<&str>, path: &str) -> bool {
    let Some(rest) = aud
        .strip_prefix("https://")
        .or_else(|| aud.strip_prefix("http://"))
    else {
        return false;
    };
    match host {
        Some(host) => rest.strip_prefix(host) == Some(path),
        None => rest.find('/').is_some_and(|i| &rest[i..] == path),
    }
}

/// Reads a PEM public key: SPKI (`BEGIN PUBLIC KEY`) or PKCS#1 (`BEGIN RSA PUBLIC KEY`).
pub fn public_key(pem: &str) -> Result<RsaPublicKey, String> {
    let pem = pem.trim();
    RsaPublicKey::from_public_key_pem(pem)
        .or_else(|_| RsaPublicKey::from_pkcs1_pem(pem))
        .map_err(|e| format!("not an RSA public key in PEM: {e}"))
}

/// Checks an RS256 JWT's signature and returns its claims.
pub fn verify_jwt(key: &VerifyingKey<Sha256>, jwt: &str) -> Result<Value, String> {
    let parts = jwt
        .rsplit_once('.')
        .and_then(|(signed, signature)| Some((signed, signed.split_once('.')?, signature)));
    let Some((signed, (header, claims), signature)) =
        parts.filter(|(_, (_, c), _)| !c.contains('.'))
    else {
        return Err("not a JWT (three dot-separated parts)".into());
    };
    let decode = |part: &str, what: &str| -> Result<Vec<u8>, String> {
        URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| format!("JWT {what} is not base64url"))
    };
    let header: Value = serde_json::from_slice(&decode(header, "header")?)
        .map_err(|_| "JWT header is not JSON".to_string())?;
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err("JWT alg must be RS256".into());
    }
    let bytes = decode(signature, "signature")?;
    let signature =
        Signature::try_from(bytes.as_slice()).map_err(|_| "Invalid JWT Signature.".to_string())?;
    key.verify(signed.as_bytes(), &signature)
        .map_err(|_| "Invalid JWT Signature.".to_string())?;
    let claims: Value = serde_json::from_slice(&decode(claims, "claims")?)
        .map_err(|_| "JWT claims are not JSON".to_string())?;
    if !claims.is_object() {
        return Err("JWT claims are not an object".into());
    }
    Ok(claims)
}

/// Checks the claims of a service-account assertion at `now`; returns (`iss`, `scope`).
pub fn check_claims(
    claims: &Value,
    host: Option<&str>,
    path: &str,
    now: u64,
) -> Result<(String, String), String> {
    let text = |name: &str| claims.get(name).and_then(Value::as_str).unwrap_or("");
    let iss = text("iss");
    if iss.is_empty() {
        return Err("iss (the service account email) is missing".into());
    }
    let scope = text("scope");
    if !scope.split_whitespace().any(|s| s == SCOPE) {
        return Err(format!("scope must include {SCOPE}"));
    }
    let aud = text("aud");
    if !audience_ok(aud, host, path) {
        return Err(format!(
            "Invalid JWT: aud `{aud}` is not this token endpoint"
        ));
    }
    let (Some(iat), Some(exp)) = (
        claims.get("iat").and_then(Value::as_u64),
        claims.get("exp").and_then(Value::as_u64),
    ) else {
        return Err("iat and exp must be numbers".into());
    };
    if exp <= now {
        return Err(format!("{TIMEFRAME} (expired)"));
    }
    if iat > now + SKEW || exp <= iat || exp - iat > MAX_ASSERTION_LIFETIME {
        return Err(TIMEFRAME.into());
    }
    Ok((iss.to_string(), scope.to_string()))
}

impl OAuth {
    /// Registers the service account's public key; `ttl` sets the lifetime of tokens issued
    /// from now on (default 3600 s).
    pub fn register(&self, pem: &str, ttl: Option<u64>) -> Result<(), String> {
        let key = public_key(pem)?;
        let mut state = lock(&self.state);
        state.key = Some(VerifyingKey::new(key));
        state.ttl = ttl;
        Ok(())
    }

    /// Forgets the key and the tokens issued.
    pub fn reset(&self) {
        let mut state = lock(&self.state);
        state.key = None;
        state.ttl = None;
        state.issued.clear();
    }

    /// The token exchange: the form body, the request's host and path, a per-request lifetime,
    /// and the time. The success body is Google's `{"access_token","expires_in","token_type"}`.
    pub fn exchange(
        &self,
        form: &[u8],
        host: Option<&str>,
        path: &str,
        ttl: Option<u64>,
        now: u64,
    ) -> Result<Value, OAuthError> {
        let form = parse_form(form)
            .ok_or_else(|| OAuthError::new("invalid_request", "malformed form body"))?;
        let grant = form.get("grant_type").map(String::as_str).unwrap_or("");
        if grant != JWT_BEARER {
            return Err(OAuthError::new(
                "unsupported_grant_type",
                format!("Invalid grant_type: {grant}"),
            ));
        }
        let assertion = form
            .get("assertion")
            .filter(|a| !a.is_empty())
            .ok_or_else(|| {
                OAuthError::new("invalid_request", "Missing required parameter: assertion")
            })?;
        let mut state = lock(&self.state);
        let key = state.key.as_ref().ok_or_else(|| {
            OAuthError::grant("no public key registered (POST /__mock/oauth/key)")
        })?;
        let claims = verify_jwt(key, assertion).map_err(OAuthError::grant)?;
        let (email, scope) = check_claims(&claims, host, path, now).map_err(OAuthError::grant)?;
        let ttl = ttl.or(state.ttl).unwrap_or(DEFAULT_TTL);
        state.counter += 1;
        let token = format!("mock-token-{}", state.counter);
        state.issued.insert(
            token.clone(),
            Issued {
                email,
                scope,
                expires_at: now.saturating_add(ttl),
            },
        );
        Ok(json!({"access_token": token, "expires_in": ttl, "token_type": "Bearer"}))
    }

    /// An issued token that has not expired at `now`.
    fn lookup(&self, token: &str, now: u64) -> Option<Issued> {
        lock(&self.state)
            .issued
            .get(token)
            .filter(|t| t.expires_at > now)
            .cloned()
    }

    /// Tokens issued (expired ones too), in issue order.
    fn tokens(&self) -> Vec<String> {
        let state = lock(&self.state);
        let mut tokens: Vec<(u64, String)> = state
            .issued
            .keys()
            .map(|t| {
                let n = t
                    .strip_prefix("mock-token-")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                (n, t.clone())
            })
            .collect();
        tokens.sort();
        tokens.into_iter().map(|(_, t)| t).collect()
    }
}

/// The `x-mock-token-ttl` header, if any.
fn ttl_header(headers: &HeaderMap) -> Result<Option<u64>, OAuthError> {
    match headers.get(TTL_HEADER) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| {
                OAuthError::new("invalid_request", format!("invalid {TTL_HEADER} header"))
            }),
    }
}

async fn token(headers: HeaderMap, uri: Uri, body: Bytes) -> Response {
    let ttl = match ttl_header(&headers) {
        Ok(ttl) => ttl,
        Err(e) => return e.reply(),
    };
    // HTTP/2 carries the host as `:authority`, which hyper puts in the URI.
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    match OAUTH.exchange(&body, host, uri.path(), ttl, reply::unix_now()) {
        Ok(answer) => reply::json(StatusCode::OK, answer),
        Err(e) => e.reply(),
    }
}

async fn tokeninfo(Query(query): Query<HashMap<String, String>>) -> Response {
    let now = reply::unix_now();
    let found = query.get("access_token").and_then(|t| OAUTH.lookup(t, now));
    match found {
        Some(t) => reply::json(
            StatusCode::OK,
            json!({"azp": t.email, "email": t.email, "scope": t.scope,
                   "expires_in": t.expires_at.saturating_sub(now).to_string()}),
        ),
        None => OAuthError::new("invalid_token", "Invalid Value").reply(),
    }
}

async fn register(headers: HeaderMap, body: Bytes) -> Response {
    let ttl = match ttl_header(&headers) {
        Ok(ttl) => ttl,
        Err(e) => return e.reply(),
    };
    match OAUTH.register(&String::from_utf8_lossy(&body), ttl) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => reply::invalid_request(&e),
    }
}

async fn tokens() -> Response {
    reply::json(StatusCode::OK, json!({"tokens": OAUTH.tokens()}))
}

async fn reset() -> StatusCode {
    OAUTH.reset();
    StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use rsa::pkcs1::EncodeRsaPublicKey;
    use rsa::pkcs1v15::SigningKey;
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    use rsa::signature::{SignatureEncoding, Signer};
    use rsa::RsaPrivateKey;
    use std::sync::OnceLock;

    const NOW: u64 = 1_700_000_000;

    fn key(bits: usize, seed: u64) -> RsaPrivateKey {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        RsaPrivateKey::new(&mut rng, bits).unwrap()
    }

    fn account_key() -> &'static RsaPrivateKey {
        static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
        KEY.get_or_init(|| key(2048, 11))
    }

    fn other_key() -> &'static RsaPrivateKey {
        static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
        KEY.get_or_init(|| key(1024, 12))
    }

    fn public_pem() -> String {
        account_key()
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap()
    }

    fn claims(over: Value) -> Value {
        let mut c = json!({"iss": "gw@p.iam.gserviceaccount.com", "scope": SCOPE,
            "aud": "https://oauth2.googleapis.com/token", "iat": NOW, "exp": NOW + 3600});
        c.as_object_mut()
            .unwrap()
            .extend(over.as_object().unwrap().clone());
        c
    }

    fn sign(key: &RsaPrivateKey, header: Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = SigningKey::<Sha256>::new(key.clone()).sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
    }

    fn jwt(claims: &Value) -> String {
        sign(account_key(), json!({"alg": "RS256", "typ": "JWT"}), claims)
    }

    fn form(assertion: &str) -> Vec<u8> {
        format!("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}")
            .into_bytes()
    }

    fn registered(ttl: Option<u64>) -> OAuth {
        let oauth = OAuth::default();
        oauth.register(&public_pem(), ttl).unwrap();
        oauth
    }

    fn exchange(oauth: &OAuth, body: &[u8]) -> Result<Value, OAuthError> {
        oauth.exchange(body, Some("oauth2.googleapis.com"), "/token", None, NOW)
    }

    #[test]
    fn decodes_forms() {
        let f = parse_form(b"a=1&b=x+y%2Fz&a=2&empty=&flag").unwrap();
        assert_eq!(f["a"], "1");
        assert_eq!(f["b"], "x y/z");
        assert_eq!(f["empty"], "");
        assert_eq!(f["flag"], "");
        assert_eq!(
            parse_form(&form("j.w.t")).unwrap()["grant_type"],
            JWT_BEARER
        );
        assert!(parse_form(b"a=%zz").is_none());
        assert!(parse_form(b"a=%4").is_none());
        assert!(parse_form(b"a=%ff").is_none(), "not UTF-8");
    }

    #[test]
    fn audience_names_this_endpoint() {
        let host = Some("oauth2.googleapis.com");
        assert!(audience_ok(
            "https://oauth2.googleapis.com/token",
            host,
            "/token"
        ));
        assert!(audience_ok(
            "http://127.0.0.1:8081/token",
            Some("127.0.0.1:8081"),
            "/token"
        ));
        assert!(audience_ok("https://anything/token", None, "/token"));
        assert!(!audience_ok(
            "https://oauth2.googleapis.com/token",
            Some("evil"),
            "/token"
        ));
        assert!(!audience_ok(
            "https://oauth2.googleapis.com/other",
            host,
            "/token"
        ));
        assert!(!audience_ok("oauth2.googleapis.com/token", host, "/token"));
        assert!(!audience_ok("", None, "/token"));
    }

    #[test]
    fn a_valid_assertion_gets_tokens() {
        let oauth = registered(None);
        let answer = exchange(&oauth, &form(&jwt(&claims(json!({}))))).unwrap();
        assert_eq!(
            answer,
            json!({"access_token": "mock-token-1", "expires_in": 3600, "token_type": "Bearer"})
        );
        let second = oauth
            .exchange(
                &form(&jwt(&claims(json!({})))),
                Some("oauth2.googleapis.com"),
                "/token",
                Some(5),
                NOW,
            )
            .unwrap();
        assert_eq!(second["access_token"], "mock-token-2");
        assert_eq!(second["expires_in"], 5);
        assert!(oauth.lookup("mock-token-1", NOW + 3599).is_some());
        assert!(oauth.lookup("mock-token-2", NOW + 4).is_some());
        assert!(oauth.lookup("mock-token-2", NOW + 5).is_none(), "expired");
        assert!(oauth.lookup("mock-token-3", NOW).is_none(), "never issued");
        assert_eq!(oauth.tokens(), vec!["mock-token-1", "mock-token-2"]);
        assert_eq!(
            oauth.lookup("mock-token-1", NOW).unwrap().email,
            "gw@p.iam.gserviceaccount.com"
        );
        // The lifetime given at registration.
        let short = registered(Some(30));
        assert_eq!(
            exchange(&short, &form(&jwt(&claims(json!({}))))).unwrap()["expires_in"],
            30
        );
        // Reset forgets the key and tokens, but never reuses a token name.
        oauth.reset();
        assert!(oauth.lookup("mock-token-1", NOW).is_none());
        assert_eq!(
            exchange(&oauth, &form(&jwt(&claims(json!({})))))
                .unwrap_err()
                .code,
            "invalid_grant"
        );
        oauth.register(&public_pem(), None).unwrap();
        assert_eq!(
            exchange(&oauth, &form(&jwt(&claims(json!({}))))).unwrap()["access_token"],
            "mock-token-3"
        );
    }

    #[test]
    fn bad_assertions_are_invalid_grants() {
        let oauth = registered(None);
        let good = jwt(&claims(json!({})));
        let (head, _) = good.rsplit_once('.').unwrap();
        let tampered = {
            let other = jwt(&claims(json!({"iss": "attacker@x"})));
            let (_, body_and_sig) = other.split_once('.').unwrap();
            let (body, _) = body_and_sig.split_once('.').unwrap();
            let (h, rest) = good.split_once('.').unwrap();
            let (_, sig) = rest.split_once('.').unwrap();
            format!("{h}.{body}.{sig}")
        };
        let cases = [
            (
                sign(other_key(), json!({"alg": "RS256"}), &claims(json!({}))),
                "Signature",
            ),
            (tampered, "Signature"),
            (format!("{head}.AAAA"), "Signature"),
            (
                sign(account_key(), json!({"alg": "none"}), &claims(json!({}))),
                "RS256",
            ),
            ("only.two".to_string(), "three"),
            (
                jwt(&claims(json!({"aud": "https://example.com/token"}))),
                "aud",
            ),
            (
                jwt(&claims(
                    json!({"scope": "https://www.googleapis.com/auth/userinfo.email"}),
                )),
                "scope",
            ),
            (jwt(&claims(json!({"iss": ""}))), "iss"),
            (
                jwt(&claims(json!({"iat": NOW - 4000, "exp": NOW - 400}))),
                "expired",
            ),
            (jwt(&claims(json!({"exp": NOW + 7200}))), "60 minutes"),
            (
                jwt(&claims(json!({"iat": NOW + 600, "exp": NOW + 1200}))),
                "60 minutes",
            ),
            (jwt(&claims(json!({"iat": "now"}))), "numbers"),
        ];
        for (i, (assertion, needle)) in cases.iter().enumerate() {
            let err = exchange(&oauth, &form(assertion)).unwrap_err();
            assert_eq!(err.code, "invalid_grant", "case {i}");
            assert!(
                err.description.contains(needle),
                "case {i}: {}",
                err.description
            );
        }
        assert!(oauth.tokens().is_empty());
        // Signed for a host the request did not go to.
        let err = oauth
            .exchange(&form(&good), Some("127.0.0.1:8081"), "/token", None, NOW)
            .unwrap_err();
        assert!(err.description.contains("aud"));
    }

    #[test]
    fn bad_requests_are_refused() {
        let oauth = registered(None);
        let good = jwt(&claims(json!({})));
        let wrong_grant = format!("grant_type=client_credentials&assertion={good}");
        assert_eq!(
            exchange(&oauth, wrong_grant.as_bytes()).unwrap_err().code,
            "unsupported_grant_type"
        );
        assert_eq!(
            exchange(&oauth, &form("")).unwrap_err().code,
            "invalid_request"
        );
        assert_eq!(
            exchange(&oauth, b"grant_type=%zz").unwrap_err().code,
            "invalid_request"
        );
        let unregistered = OAuth::default();
        let err = exchange(&unregistered, &form(&good)).unwrap_err();
        assert!(err.description.contains("/__mock/oauth/key"));
    }

    #[test]
    fn public_keys_in_both_pem_forms() {
        let public = account_key().to_public_key();
        assert!(public_key(&public_pem()).is_ok());
        let pkcs1 = public.to_pkcs1_pem(LineEnding::LF).unwrap();
        assert_eq!(public_key(&pkcs1).unwrap(), public);
        assert!(public_key("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----").is_err());
        assert!(OAuth::default().register("not a key", None).is_err());
    }

    #[test]
    fn ttl_header_is_a_number() {
        let mut headers = HeaderMap::new();
        assert_eq!(ttl_header(&headers), Ok(None));
        headers.insert(TTL_HEADER, "42".parse().unwrap());
        assert_eq!(ttl_header(&headers), Ok(Some(42)));
        headers.insert(TTL_HEADER, "soon".parse().unwrap());
        assert_eq!(ttl_header(&headers).unwrap_err().code, "invalid_request");
    }

    #[test]
    fn the_plugins_assertion_is_accepted() {
        // The JWT ai-proxy sends for a service account passes this endpoint's checks.
        let pem = account_key()
            .to_pkcs8_pem(LineEnding::LF)
            .unwrap()
            .to_string();
        let key = json!({"type": "service_account", "project_id": "p", "private_key": pem,
            "client_email": "gw@p.iam.gserviceaccount.com",
            "token_uri": "http://127.0.0.1:8081/token"})
        .to_string();
        let config: ai_proxy::config::ProviderConfig = serde_json::from_value(json!({
            "type": "vertex", "vertexRegion": "us-central1", "vertexAuthServiceName": "oauth"}))
        .unwrap();
        let account = ai_proxy::vertex::ServiceAccount::parse(&key, &config).unwrap();
        let oauth = registered(None);
        let answer = oauth
            .exchange(
                &form(&account.jwt(NOW).unwrap()),
                Some("127.0.0.1:8081"),
                "/token",
                None,
                NOW,
            )
            .unwrap();
        assert_eq!(answer["access_token"], "mock-token-1");
    }
}
