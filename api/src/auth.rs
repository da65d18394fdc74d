//! Authentication: per-user JWTs that mnemo issues (EdDSA), and optionally tokens of an
//! external issuer, checked against its JWKS.
//!
//! Validation accepts only `EdDSA` for mnemo's own tokens (no `none`, no HMAC or RSA, so
//! no key confusion), and only the algorithms of the JWKS keys for the external issuer;
//! it checks the signature, `exp` and `nbf` with a small leeway, `aud` and `iss`, and that
//! `sub` is a valid user id. Tokens are never logged.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, jwk::JwkSet};
use mnemo_core::{SigningKey, UserId};
use serde::{Deserialize, Serialize};

/// Leeway on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 30;

/// What a token says.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Audience.
    pub aud: String,
    /// Issuer.
    pub iss: String,
    /// Expiry (seconds since the epoch).
    pub exp: u64,
    /// Not before.
    #[serde(default)]
    pub nbf: u64,
    /// Issued at.
    #[serde(default)]
    pub iat: u64,
    /// Token id.
    #[serde(default)]
    pub jti: String,
    /// An admin token (may create users).
    #[serde(default)]
    pub adm: bool,
    /// A processor's token (`sub` is the processor's name).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prc: bool,
    /// A console session's id: the token is valid only while the session is live
    /// (`http::session`), and signing out ends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

/// Who is calling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// A user (acting on their own chain, or reading another's under a grant).
    User(UserId),
    /// An administrator.
    Admin,
    /// A registered processor (its registration is checked on every request).
    Processor(mnemo_core::ProcessorId),
}

/// Why a token is refused (the details go to the client; the token never to logs).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AuthError(pub String);

/// An external issuer whose tokens are accepted.
#[derive(Clone)]
pub struct ExternalIssuer {
    /// Its `iss`.
    pub issuer: String,
    /// Its keys.
    pub jwks: JwkSet,
}

/// Tokens already checked, by the blake3 hash of the whole token: a repeated token skips
/// the signature check until its own `exp` (+ leeway). Bounded; cleared when full.
#[derive(Default)]
struct Checked(std::sync::Mutex<std::collections::HashMap<[u8; 32], (Principal, u64)>>);

const CHECKED_MAX: usize = 100_000;

/// Issues and checks tokens.
#[derive(Clone)]
pub struct Auth {
    checked: std::sync::Arc<Checked>,
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// `iss` of mnemo's tokens.
    pub issuer: String,
    /// `aud` every token must carry.
    pub audience: String,
    external: Option<ExternalIssuer>,
    /// Keys the console's CSRF tokens (derived from the signing key).
    csrf_key: [u8; 32],
}

/// PKCS#8 v1 DER of an Ed25519 private key (RFC 8410): this fixed prefix, then the seed.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

fn now() -> u64 {
    mnemo_ledger::clock::now_secs()
}

impl Auth {
    /// Tokens signed with `key` (an Ed25519 key of its own, not the custody key).
    pub fn new(key: &SigningKey, issuer: &str, audience: &str) -> Self {
        let mut der = ED25519_PKCS8_PREFIX.to_vec();
        der.extend_from_slice(&key.to_bytes());
        Self {
            checked: Default::default(),
            encoding: EncodingKey::from_ed_der(&der),
            decoding: DecodingKey::from_ed_der(key.verifying_key().as_bytes()),
            issuer: issuer.into(),
            audience: audience.into(),
            external: None,
            csrf_key: blake3::derive_key("mnemo 2026-12-02 console csrf v1", &key.to_bytes()),
        }
    }

    /// The CSRF token of a console session (its cookie's token): a keyed hash, so only this
    /// server can make it, and a page must have read it from `/v1/session` to send it.
    pub fn csrf(&self, session_token: &str) -> String {
        let h = blake3::keyed_hash(&self.csrf_key, session_token.as_bytes());
        h.to_hex()[..32].to_owned()
    }

    /// Seconds until a token (already checked) expires, read from its claims.
    pub fn expires_in(&self, token: &str) -> Option<u64> {
        let exp = self.claim(token, "exp")?.as_u64()?;
        Some(exp.saturating_sub(now()))
    }

    /// Also accept tokens of `issuer`, signed by a key of `jwks`.
    pub fn with_external(mut self, issuer: ExternalIssuer) -> Self {
        self.external = Some(issuer);
        self
    }

    /// Signs a token about `sub` valid for `ttl_secs` from now (admin, processor or a
    /// session's, as the flags say).
    fn sign(&self, sub: &str, adm: bool, prc: bool, sid: Option<&str>, ttl_secs: u64) -> String {
        let now = now();
        let claims = Claims {
            sub: sub.into(),
            aud: self.audience.clone(),
            iss: self.issuer.clone(),
            exp: now + ttl_secs,
            nbf: now.saturating_sub(1),
            iat: now,
            jti: hex::encode(rand::random::<[u8; 16]>()),
            adm,
            prc,
            sid: sid.map(str::to_owned),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &self.encoding)
            .expect("an Ed25519 key signs")
    }

    /// Issues a token for `user` (or an admin token), valid for `ttl_secs`.
    pub fn issue(&self, sub: &str, admin: bool, ttl_secs: u64) -> String {
        self.sign(sub, admin, false, None, ttl_secs)
    }

    /// Issues a console session's token for `user`, valid for `ttl_secs` and only while
    /// the session `sid` is live.
    pub fn issue_session(&self, user: &UserId, sid: &str, ttl_secs: u64) -> String {
        self.sign(user.as_str(), false, false, Some(sid), ttl_secs)
    }

    /// The session id of a token (already checked), if it is a session's.
    pub fn session_id(&self, token: &str) -> Option<String> {
        self.claim(token, "sid")?.as_str().map(str::to_owned)
    }

    fn claim(&self, token: &str, name: &str) -> Option<serde_json::Value> {
        use base64::Engine;
        let claims = token.split('.').nth(1)?;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .ok()?;
        serde_json::from_slice::<serde_json::Value>(&raw)
            .ok()?
            .get_mut(name)
            .map(serde_json::Value::take)
    }

    /// Issues a processor's token, valid for `ttl_secs`.
    pub fn issue_processor(&self, name: &mnemo_core::ProcessorId, ttl_secs: u64) -> String {
        self.sign(name.as_str(), false, true, None, ttl_secs)
    }

    fn validation(&self, alg: Algorithm, issuer: &str) -> Validation {
        let mut v = Validation::new(alg);
        v.algorithms = vec![alg];
        v.leeway = LEEWAY_SECS;
        v.validate_nbf = true;
        v.set_audience(&[&self.audience]);
        v.set_issuer(&[issuer]);
        v.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        v
    }

    /// Checks a bearer token.
    pub fn check(&self, token: &str) -> Result<Principal, AuthError> {
        let key = *blake3::hash(token.as_bytes()).as_bytes();
        let now = now();
        {
            let map = self.checked.0.lock().expect("not poisoned");
            if let Some((p, exp)) = map.get(&key)
                && now <= exp + LEEWAY_SECS
            {
                return Ok(p.clone());
            }
        }
        let (principal, exp) = self.check_uncached(token)?;
        let mut map = self.checked.0.lock().expect("not poisoned");
        if map.len() >= CHECKED_MAX {
            map.clear();
        }
        map.insert(key, (principal.clone(), exp));
        Ok(principal)
    }

    fn check_uncached(&self, token: &str) -> Result<(Principal, u64), AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError(format!("malformed token: {e}")))?;
        let claims = if header.alg == Algorithm::EdDSA && header.kid.is_none() {
            jsonwebtoken::decode::<Claims>(
                token,
                &self.decoding,
                &self.validation(Algorithm::EdDSA, &self.issuer),
            )
            .map_err(|e| AuthError(format!("invalid token: {e}")))?
            .claims
        } else if let Some(ext) = &self.external {
            let kid = header
                .kid
                .as_deref()
                .ok_or_else(|| AuthError("token without kid".into()))?;
            let jwk = ext
                .jwks
                .find(kid)
                .ok_or_else(|| AuthError(format!("unknown key id {kid:?}")))?;
            let alg = jwk
                .common
                .key_algorithm
                .and_then(|a| a.to_string().parse::<Algorithm>().ok())
                .ok_or_else(|| AuthError("JWKS key without a usable alg".into()))?;
            if alg != header.alg {
                return Err(AuthError("alg does not match the key's".into()));
            }
            let key = DecodingKey::from_jwk(jwk).map_err(|e| AuthError(e.to_string()))?;
            let c = jsonwebtoken::decode::<Claims>(token, &key, &self.validation(alg, &ext.issuer))
                .map_err(|e| AuthError(format!("invalid token: {e}")))?
                .claims;
            if c.adm || c.prc {
                return Err(AuthError(
                    "external tokens cannot be admin or processor tokens".into(),
                ));
            }
            c
        } else {
            return Err(AuthError(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        };
        if claims.adm {
            return Ok((Principal::Admin, claims.exp));
        }
        if claims.prc {
            return mnemo_core::ProcessorId::new(&claims.sub)
                .map(|p| (Principal::Processor(p), claims.exp))
                .map_err(|e| AuthError(format!("sub: {e}")));
        }
        UserId::new(&claims.sub)
            .map(|u| (Principal::User(u), claims.exp))
            .map_err(|e| AuthError(format!("sub: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519_PKCS8: [u8; 16] = ED25519_PKCS8_PREFIX;

    fn external() -> (Auth, SigningKey) {
        let ext = SigningKey::from_bytes(&[42; 32]);
        use base64::Engine;
        let x =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(ext.verifying_key().as_bytes());
        let jwks: JwkSet = serde_json::from_value(serde_json::json!({
            "keys": [{ "kty": "OKP", "crv": "Ed25519", "x": x, "kid": "k1", "alg": "EdDSA", "use": "sig" }]
        }))
        .unwrap();
        let auth = Auth::new(&SigningKey::from_bytes(&[1; 32]), "mnemo", "mnemo-api")
            .with_external(ExternalIssuer {
                issuer: "https://id.example".into(),
                jwks,
            });
        (auth, ext)
    }

    fn token(key: &SigningKey, kid: Option<&str>, claims: serde_json::Value) -> String {
        let mut der = ED25519_PKCS8.to_vec();
        der.extend_from_slice(&key.to_bytes());
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&h, &claims, &EncodingKey::from_ed_der(&der)).unwrap()
    }

    fn claims(iss: &str, adm: bool) -> serde_json::Value {
        serde_json::json!({ "sub": "alice", "aud": "mnemo-api", "iss": iss,
                            "exp": now() + 600, "nbf": now() - 5, "adm": adm })
    }

    #[test]
    fn external_issuer_tokens_are_checked_against_its_jwks() {
        let (auth, ext) = external();
        let ok = token(&ext, Some("k1"), claims("https://id.example", false));
        assert_eq!(
            auth.check(&ok).unwrap(),
            Principal::User(UserId::new("alice").unwrap())
        );
        // unknown kid, wrong issuer, an admin claim, another key under the right kid
        let bad = [
            token(&ext, Some("k2"), claims("https://id.example", false)),
            token(&ext, Some("k1"), claims("https://evil.example", false)),
            token(&ext, Some("k1"), claims("https://id.example", true)),
            token(
                &SigningKey::from_bytes(&[43; 32]),
                Some("k1"),
                claims("https://id.example", false),
            ),
            // the external key without a kid is checked as mnemo's own: refused
            token(&ext, None, claims("mnemo", false)),
        ];
        for t in bad {
            assert!(auth.check(&t).is_err(), "{t}");
        }
        // mnemo's own tokens still work next to the external issuer
        let own = auth.issue("bob", false, 60);
        assert_eq!(
            auth.check(&own).unwrap(),
            Principal::User(UserId::new("bob").unwrap())
        );
    }
}
