//! Passwords (bcrypt in upstream's `$2b$` format, argon2 imports verified),
//! JWTs in fastapi-users' format, and the in-memory user cache that answers
//! "who is this token?" without a database query.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

use jwt_simple::prelude::{
    Claims, Duration, HS256Key, HS384Key, HS512Key, JWTClaims, MACLike, VerificationOptions,
};
use serde::{Deserialize, Serialize};

use crate::config::Algorithm;
use crate::model::user::User;

/// Lifetime of e-mail verification and password reset tokens.
pub const ACCOUNT_TOKEN_SECS: u64 = 3600;
/// Lifetime of invite tokens.
pub const INVITE_TOKEN_SECS: u64 = 7 * 24 * 3600;

/// What a token may be used for; each purpose has its own audience, so one
/// kind is never accepted as another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Access,
    Verify,
    Reset,
    Invite,
}

impl Purpose {
    fn audience(self) -> &'static str {
        match self {
            Purpose::Access => "fastapi-users:auth",
            Purpose::Verify => "fastapi-users:verify",
            Purpose::Reset => "fastapi-users:reset",
            Purpose::Invite => "kci-lite:invite",
        }
    }
}

/// Claims beyond `sub`/`aud`/`exp`, present only on account tokens.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Extra {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub password_fgpt: Option<String>,
}

/// A verified token's content.
#[derive(Debug, PartialEq)]
pub struct TokenClaims {
    pub subject: String,
    pub extra: Extra,
}

enum Key {
    H256(HS256Key),
    H384(HS384Key),
    H512(HS512Key),
}

impl Key {
    fn new(alg: Algorithm, secret: &[u8]) -> Key {
        match alg {
            Algorithm::HS256 => Key::H256(HS256Key::from_bytes(secret)),
            Algorithm::HS384 => Key::H384(HS384Key::from_bytes(secret)),
            Algorithm::HS512 => Key::H512(HS512Key::from_bytes(secret)),
        }
    }

    fn sign(&self, claims: JWTClaims<Extra>) -> Result<String, jwt_simple::Error> {
        match self {
            Key::H256(k) => k.authenticate(claims),
            Key::H384(k) => k.authenticate(claims),
            Key::H512(k) => k.authenticate(claims),
        }
    }

    fn verify(
        &self,
        token: &str,
        options: VerificationOptions,
    ) -> Result<JWTClaims<Extra>, jwt_simple::Error> {
        match self {
            Key::H256(k) => k.verify_token(token, Some(options)),
            Key::H384(k) => k.verify_token(token, Some(options)),
            Key::H512(k) => k.verify_token(token, Some(options)),
        }
    }
}

/// Why a caller is refused, or a key operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthError {
    /// No token, a bad or expired one, or its user is gone or inactive.
    Unauthorized,
    /// The user lacks the role (verified, superuser) the operation needs.
    Forbidden,
    /// Signing or hashing failed (a server fault).
    Internal(String),
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthError::Unauthorized => f.write_str("unauthorized"),
            AuthError::Forbidden => f.write_str("forbidden"),
            AuthError::Internal(cause) => f.write_str(cause),
        }
    }
}

impl std::error::Error for AuthError {}

/// Signing and verification keys (SECRET_KEY, then UNIFIED_SECRET).
pub struct Keys {
    primary: Key,
    fallback: Option<Key>,
    secret: Vec<u8>,
    access_lifetime_secs: u64,
}

impl Keys {
    pub fn new(
        alg: Algorithm,
        secret: &str,
        unified: Option<&str>,
        access_lifetime_secs: u64,
    ) -> Keys {
        Keys {
            primary: Key::new(alg, secret.as_bytes()),
            fallback: unified.map(|u| Key::new(alg, u.as_bytes())),
            secret: secret.as_bytes().to_vec(),
            access_lifetime_secs,
        }
    }

    /// Issues a token for `user_id`. Access tokens carry exactly `sub`,
    /// `aud` and `exp`, as fastapi-users' do.
    pub fn issue(
        &self,
        purpose: Purpose,
        user_id: &str,
        extra: Extra,
    ) -> Result<String, AuthError> {
        let lifetime = match purpose {
            Purpose::Access => self.access_lifetime_secs,
            Purpose::Verify | Purpose::Reset => ACCOUNT_TOKEN_SECS,
            Purpose::Invite => INVITE_TOKEN_SECS,
        };
        let mut claims = Claims::with_custom_claims(extra, Duration::from_secs(lifetime))
            .with_subject(user_id)
            .with_audiences(HashSet::from([purpose.audience()]));
        claims.issued_at = None;
        claims.invalid_before = None;
        self.primary
            .sign(claims)
            .map_err(|e| AuthError::Internal(format!("cannot sign token: {e}")))
    }

    /// Checks signature (either key), algorithm, audience and expiry.
    pub fn verify(&self, purpose: Purpose, token: &str) -> Option<TokenClaims> {
        let options = || VerificationOptions {
            allowed_audiences: Some(HashSet::from([purpose.audience().to_string()])),
            time_tolerance: Some(Duration::from_secs(0)),
            ..VerificationOptions::default()
        };
        let claims = self
            .primary
            .verify(token, options())
            .or_else(|e| match &self.fallback {
                Some(key) => key.verify(token, options()),
                None => Err(e),
            })
            .ok()?;
        Some(TokenClaims {
            subject: claims.subject?,
            extra: claims.custom,
        })
    }

    /// A fingerprint of a password hash, keyed with the secret: a reset
    /// token carries it and dies when the password changes.
    pub fn password_fingerprint(&self, hashed_password: &str) -> String {
        hmac_sha256::HMAC::mac(hashed_password.as_bytes(), &self.secret)
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Hashes a password as upstream's admin tool does (`$2b$`, given cost).
pub fn hash_password(password: &str, cost: u32) -> Result<String, AuthError> {
    bcrypt::hash_with_result(password, cost)
        .map(|h| h.format_for_version(bcrypt::Version::TwoB))
        .map_err(|e| AuthError::Internal(format!("cannot hash password: {e}")))
}

/// Outcome of checking a password against a stored hash.
#[derive(Debug, PartialEq, Eq)]
pub enum PasswordCheck {
    Wrong,
    /// Correct, and the hash is bcrypt already.
    Ok,
    /// Correct, but the hash is an imported argon2 one to replace.
    OkRehash,
}

/// Verifies bcrypt (`$2a$`, `$2b$`, `$2y$`) and argon2 PHC hashes.
pub fn verify_password(password: &str, hash: &str) -> PasswordCheck {
    if hash.starts_with("$argon2") {
        use argon2::PasswordVerifier;
        let ok = argon2::PasswordHash::new(hash).is_ok_and(|parsed| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        });
        return if ok {
            PasswordCheck::OkRehash
        } else {
            PasswordCheck::Wrong
        };
    }
    match bcrypt::verify(password, hash) {
        Ok(true) => PasswordCheck::Ok,
        _ => PasswordCheck::Wrong,
    }
}

/// Every user by id, kept exact by the writer thread after each commit
/// that changes a user.
#[derive(Default)]
pub struct UserCache {
    users: RwLock<HashMap<String, User>>,
}

impl UserCache {
    pub fn load(users: Vec<User>) -> UserCache {
        UserCache {
            users: RwLock::new(users.into_iter().map(|u| (u.id.clone(), u)).collect()),
        }
    }

    pub fn get(&self, id: &str) -> Option<User> {
        self.users.read().ok()?.get(id).cloned()
    }

    pub fn put(&self, user: &User) {
        if let Ok(mut users) = self.users.write() {
            users.insert(user.id.clone(), user.clone());
        }
    }

    pub fn remove(&self, id: &str) {
        if let Ok(mut users) = self.users.write() {
            users.remove(id);
        }
    }
}

/// The token of an `Authorization: Bearer …` header value (scheme in any
/// case).
pub fn bearer(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The active user behind an access token (`None`: no token given).
pub fn user(keys: &Keys, cache: &UserCache, token: Option<&str>) -> Result<User, AuthError> {
    let token = token.ok_or(AuthError::Unauthorized)?;
    let claims = keys
        .verify(Purpose::Access, token)
        .ok_or(AuthError::Unauthorized)?;
    cache
        .get(&claims.subject)
        .filter(|u| u.is_active)
        .ok_or(AuthError::Unauthorized)
}

/// Like [`user`], and the user must be verified.
pub fn verified(keys: &Keys, cache: &UserCache, token: Option<&str>) -> Result<User, AuthError> {
    let user = user(keys, cache, token)?;
    if user.is_verified {
        Ok(user)
    } else {
        Err(AuthError::Forbidden)
    }
}

/// Like [`user`], and the user must be a superuser.
pub fn admin(keys: &Keys, cache: &UserCache, token: Option<&str>) -> Result<User, AuthError> {
    let user = user(keys, cache, token)?;
    if user.is_superuser {
        Ok(user)
    } else {
        Err(AuthError::Forbidden)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys::new(
            Algorithm::HS256,
            "secret-key-1234",
            Some("unified-key-1234"),
            3600,
        )
    }

    #[test]
    fn purposes_do_not_mix() {
        let k = keys();
        let token = k
            .issue(Purpose::Reset, "u1", Extra::default())
            .expect("sign");
        assert!(k.verify(Purpose::Access, &token).is_none());
        assert_eq!(
            k.verify(Purpose::Reset, &token)
                .map(|c| c.subject)
                .as_deref(),
            Some("u1")
        );
    }

    #[test]
    fn unified_secret_is_accepted() {
        let other = Keys::new(Algorithm::HS256, "unified-key-1234", None, 3600);
        let token = other
            .issue(Purpose::Access, "u1", Extra::default())
            .expect("sign");
        assert!(keys().verify(Purpose::Access, &token).is_some());
        let stranger = Keys::new(Algorithm::HS256, "another-key-1234", None, 3600);
        let token = stranger
            .issue(Purpose::Access, "u1", Extra::default())
            .expect("sign");
        assert!(keys().verify(Purpose::Access, &token).is_none());
    }

    #[test]
    fn algorithm_must_match() {
        let k384 = Keys::new(Algorithm::HS384, "secret-key-1234", None, 3600);
        let token = k384
            .issue(Purpose::Access, "u1", Extra::default())
            .expect("sign");
        assert!(keys().verify(Purpose::Access, &token).is_none());
        assert!(k384.verify(Purpose::Access, &token).is_some());
    }

    #[test]
    fn bcrypt_format_and_verify() {
        let hash = hash_password("pw", 4).expect("hash");
        assert!(hash.starts_with("$2b$04$"), "{hash}");
        assert_eq!(verify_password("pw", &hash), PasswordCheck::Ok);
        assert_eq!(verify_password("nope", &hash), PasswordCheck::Wrong);
        let two_a = hash.replacen("$2b$", "$2a$", 1);
        assert_eq!(verify_password("pw", &two_a), PasswordCheck::Ok);
    }

    #[test]
    fn argon2_imports_verify() {
        use argon2::PasswordHasher;
        let salt = argon2::password_hash::SaltString::from_b64("c2FsdHNhbHRzYWx0").expect("salt");
        let hash = argon2::Argon2::default()
            .hash_password(b"pw", &salt)
            .expect("hash")
            .to_string();
        assert_eq!(verify_password("pw", &hash), PasswordCheck::OkRehash);
        assert_eq!(verify_password("x", &hash), PasswordCheck::Wrong);
    }

    #[test]
    fn bearer_parsing() {
        for (header, want) in [
            ("Bearer abc", Some("abc")),
            ("bearer abc", Some("abc")),
            ("Bearer", None),
            ("Token abc", None),
            ("abc", None),
        ] {
            assert_eq!(bearer(header), want, "{header}");
        }
    }
}
