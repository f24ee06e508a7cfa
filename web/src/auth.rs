//! Bearer tokens: HS256 JWTs signed with a key kept in the data folder, in the spirit of
//! LiveKit's access tokens. A token names a role, a room, and the participant.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Who may do what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs the meeting: publishes, controls the floor.
    Chair,
    /// A cultural house: watches, raises its hand, speaks when given the floor.
    House,
    /// Reviews the record; may watch.
    Official,
    /// A loudspeaker receiver: pulls its cluster's stream and posts heartbeats. The token's
    /// subject is the cluster id.
    Receiver,
    /// The house screen's QR code, on a villager's phone: raises feedback for one house (the
    /// subject) in one meeting ([`Claims::meeting`]) and reads back its own items, nothing
    /// else. Short-lived; refused by [`Keys::verify`], so by every route but the phone's.
    #[value(skip)]
    Feedback,
}

impl Role {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Chair => "chair",
            Role::House => "house",
            Role::Official => "official",
            Role::Receiver => "receiver",
            Role::Feedback => "feedback",
        }
    }
}

/// The claims of a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Participant id: `chair`, a house id, or an official's id.
    pub sub: String,
    /// Display name (left out when empty, as in a `feedback` token).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// What the token may do (the routes check it with the room).
    pub role: Role,
    /// The room the token is for.
    pub room: String,
    /// Issued at (seconds since the epoch).
    pub iat: u64,
    /// Expires at (seconds since the epoch).
    pub exp: u64,
    /// A `feedback` token's meeting: the only one it may raise feedback in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meeting: Option<String>,
    /// The token's id (32 hex digits, random): what a revocation names, and what owns the
    /// WHIP/WHEP sessions made with it. Tokens without one are refused.
    pub jti: String,
    /// A `feedback` token's parent: the first [`PARENT_HEX`] hex digits of the id of the house
    /// token whose screen minted it (short, to keep the QR code small). Revoking the house's
    /// token refuses the QR codes it showed too.
    #[serde(default, rename = "par", skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

/// Hex digits of a parent token's id that a `feedback` token carries (48 bits).
pub const PARENT_HEX: usize = 12;

/// A fresh token id: 32 hex digits, random.
fn new_jti() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Why a token was refused. Each maps to 401 (who are you?) or 403 (not allowed).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// No token in the request; send `Authorization: Bearer …` (or `?token=` where a header
    /// cannot be set).
    #[error("a bearer token is required")]
    Missing,
    /// The token's time is up; ask for a new one.
    #[error("the token has expired")]
    Expired,
    /// Not a token this hub signed.
    #[error("the token is not valid")]
    Invalid,
    /// The token was revoked (`dinh token revoke`); ask for a new one.
    #[error("the token has been revoked")]
    Revoked,
    /// The token is for another room.
    #[error("the token is for room '{token_room}', not '{room}'")]
    WrongRoom {
        /// Room in the token.
        token_room: String,
        /// Room asked for.
        room: String,
    },
    /// The token's role may not do this.
    #[error("a {have} token cannot {action}; it needs the {need} role")]
    WrongRole {
        /// Role in the token.
        have: &'static str,
        /// Role needed.
        need: &'static str,
        /// What was attempted.
        action: &'static str,
    },
}

/// Signs and checks tokens.
#[derive(Clone)]
pub struct Keys {
    enc: EncodingKey,
    dec: DecodingKey,
}

impl Keys {
    /// Keys from raw secret bytes.
    pub fn from_secret(secret: &[u8]) -> Self {
        Self {
            enc: EncodingKey::from_secret(secret),
            dec: DecodingKey::from_secret(secret),
        }
    }

    /// Load the key from `dir/signing.key`, creating it (32 random bytes, hex, mode 0600)
    /// on first start.
    pub fn load_or_create(dir: &Path) -> std::io::Result<Self> {
        let path = dir.join("signing.key");
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let bytes = hex::decode(text.trim()).map_err(|e| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{}: not a hex key: {e}", path.display()),
                    )
                })?;
                Ok(Self::from_secret(&bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let secret: [u8; 32] = rand::random();
                write_private(&path, hex::encode(secret).as_bytes())?;
                Ok(Self::from_secret(&secret))
            }
            Err(e) => Err(e),
        }
    }

    /// Mint a token.
    pub fn issue(&self, sub: &str, name: &str, role: Role, room: &str, ttl: Duration) -> String {
        let now = now_secs();
        self.sign(&Claims {
            sub: sub.to_owned(),
            name: name.to_owned(),
            role,
            room: room.to_owned(),
            iat: now,
            exp: now + ttl.as_secs().max(1),
            meeting: None,
            jti: new_jti(),
            parent: None,
        })
    }

    /// Mint a `feedback` token for the QR code of `house` in `meeting` of `room`, with a fresh
    /// id, shown by the screen whose token has id `parent`; kept small (no name) so that the
    /// QR code stays easy to scan.
    pub fn issue_feedback(
        &self,
        house: &str,
        room: &str,
        meeting: &str,
        parent: &str,
        ttl: Duration,
    ) -> String {
        let now = now_secs();
        self.sign(&Claims {
            sub: house.to_owned(),
            name: String::new(),
            role: Role::Feedback,
            room: room.to_owned(),
            iat: now,
            exp: now + ttl.as_secs().max(1),
            meeting: Some(meeting.to_owned()),
            jti: new_jti(),
            parent: Some(parent.chars().take(PARENT_HEX).collect()),
        })
    }

    fn sign(&self, claims: &Claims) -> String {
        // Encoding HS256 with a valid key cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.enc).unwrap_or_default()
    }

    /// Check a token's signature and expiry (not whether it was revoked: see
    /// `AppState::claims`). A `feedback` token is refused here: it is good only for the phone
    /// page's routes, which check it with [`Keys::verify_feedback`].
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let c = self.decode(token, true)?;
        if c.role == Role::Feedback {
            return Err(AuthError::WrongRole {
                have: "feedback",
                need: "house",
                action: "use this route (it only raises feedback from the phone page)",
            });
        }
        Ok(c)
    }

    /// Check a `feedback` token: signature, expiry, role, and its meeting present.
    pub fn verify_feedback(&self, token: &str) -> Result<Claims, AuthError> {
        let c = self.decode(token, true)?;
        if c.role != Role::Feedback || c.meeting.is_none() {
            return Err(AuthError::WrongRole {
                have: c.role.as_str(),
                need: "feedback",
                action: "use the phone page",
            });
        }
        Ok(c)
    }

    /// Check a token's signature only, even when it has expired (to revoke it).
    pub fn verify_signature(&self, token: &str) -> Result<Claims, AuthError> {
        self.decode(token, false)
    }

    fn decode(&self, token: &str, check_expiry: bool) -> Result<Claims, AuthError> {
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = 0;
        v.validate_exp = check_expiry;
        v.set_required_spec_claims(&["exp", "sub", "jti"]);
        jsonwebtoken::decode::<Claims>(token, &self.dec, &v)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::Invalid,
            })
    }
}

impl Claims {
    /// Require the token to be for `room`.
    pub fn for_room(&self, room: &str) -> Result<(), AuthError> {
        if self.room == room {
            Ok(())
        } else {
            Err(AuthError::WrongRoom {
                token_room: self.room.clone(),
                room: room.to_owned(),
            })
        }
    }

    /// Require one of `roles`.
    pub fn require(&self, roles: &[Role], action: &'static str) -> Result<(), AuthError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(AuthError::WrongRole {
                have: self.role.as_str(),
                need: roles[0].as_str(),
                action,
            })
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Create a folder (and its parents) that only its owner may enter (0700), or make an
/// existing one so: the data folder holds the signing keys and the record.
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)?;
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(path)
    }
}

/// Make every file under `dir` its owner's only (0600, folders 0700): files that libraries
/// create with the default umask (the SQLite record and its journal) as well as ours.
pub fn tighten(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            let mode = meta.permissions().mode();
            if meta.is_dir() {
                if mode & 0o077 != 0 {
                    std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o700))?;
                }
                tighten(&entry.path())?;
            } else if meta.is_file() && mode & 0o077 != 0 {
                std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o600))?;
            }
        }
    }
    Ok(())
}

pub use dinh_events::chain::write_private;

/// coturn REST-API credentials (draft-uberti-behave-turn-rest): username `expiry:id`,
/// password base64(HMAC-SHA1(secret, username)).
pub fn turn_credentials(secret: &str, id: &str, ttl: Duration) -> (String, String) {
    use base64::Engine;
    let username = format!("{}:{}", now_secs() + ttl.as_secs(), id);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    let tag = ring::hmac::sign(&key, username.as_bytes());
    (
        username,
        base64::engine::general_purpose::STANDARD.encode(tag.as_ref()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minute's token of house-1 in room `demo`.
    fn house_1(k: &Keys) -> String {
        k.issue(
            "house-1",
            "Thôn 1",
            Role::House,
            "demo",
            Duration::from_secs(60),
        )
    }

    #[test]
    fn issue_verify_and_refuse() {
        let k = Keys::from_secret(b"0123456789abcdef0123456789abcdef");
        let t = house_1(&k);
        let c = k.verify(&t).unwrap();
        assert_eq!(
            (c.sub.as_str(), c.role, c.room.as_str()),
            ("house-1", Role::House, "demo")
        );
        assert_eq!(
            c.for_room("other").unwrap_err().to_string(),
            "the token is for room 'demo', not 'other'"
        );
        assert_eq!(
            c.require(&[Role::Chair], "publish")
                .unwrap_err()
                .to_string(),
            "a house token cannot publish; it needs the chair role"
        );
        let other = Keys::from_secret(b"another key, another key, another");
        assert_eq!(other.verify(&t), Err(AuthError::Invalid));
        assert_eq!(k.verify("garbage"), Err(AuthError::Invalid));
        let mut tampered = t.clone();
        tampered.pop();
        assert_eq!(k.verify(&tampered), Err(AuthError::Invalid));
    }

    #[test]
    fn expired_tokens_are_refused() {
        let k = Keys::from_secret(b"0123456789abcdef0123456789abcdef");
        let claims = Claims {
            sub: "x".into(),
            name: "x".into(),
            role: Role::Chair,
            room: "demo".into(),
            iat: 1,
            exp: 2,
            meeting: None,
            jti: "00".into(),
            parent: None,
        };
        let t = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &k.enc).unwrap();
        assert_eq!(k.verify(&t), Err(AuthError::Expired));
        assert_eq!(k.verify_signature(&t).unwrap().jti, "00");
    }

    #[test]
    fn every_token_has_its_own_id_and_tokens_without_one_are_refused() {
        let k = Keys::from_secret(b"0123456789abcdef0123456789abcdef");
        let ttl = Duration::from_secs(60);
        let a = k
            .verify(&k.issue("h", "h", Role::House, "demo", ttl))
            .unwrap();
        let b = k
            .verify(&k.issue("h", "h", Role::House, "demo", ttl))
            .unwrap();
        assert_eq!(a.jti.len(), 32);
        assert_ne!(a.jti, b.jti);
        // A token signed with the right key but minted before token ids existed.
        #[derive(Serialize)]
        struct Old<'a> {
            sub: &'a str,
            name: &'a str,
            role: Role,
            room: &'a str,
            iat: u64,
            exp: u64,
        }
        let old = Old {
            sub: "chair",
            name: "c",
            role: Role::Chair,
            room: "demo",
            iat: now_secs(),
            exp: now_secs() + 60,
        };
        let t = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &old, &k.enc).unwrap();
        assert_eq!(k.verify(&t), Err(AuthError::Invalid));
    }

    #[test]
    fn private_folders_are_0700_even_when_they_existed() {
        use std::os::unix::fs::PermissionsExt;
        let d = std::env::temp_dir().join(format!("dinh-priv-{}", rand::random::<u64>()));
        create_private_dir(&d.join("a/b")).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&d.join("a/b")), 0o700);
        std::fs::set_permissions(d.join("a/b"), std::fs::Permissions::from_mode(0o755)).unwrap();
        create_private_dir(&d.join("a/b")).unwrap();
        assert_eq!(mode(&d.join("a/b")), 0o700);
        write_private(&d.join("a/b/k"), b"x").unwrap();
        assert_eq!(mode(&d.join("a/b/k")), 0o600);
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn a_feedback_token_is_good_only_for_the_phone_routes() {
        let k = Keys::from_secret(b"0123456789abcdef0123456789abcdef");
        let t = k.issue_feedback("house-1", "demo", "m1", "p", Duration::from_secs(60));
        assert_eq!(
            k.verify(&t).unwrap_err().to_string(),
            "a feedback token cannot use this route (it only raises feedback from the phone page); it needs the house role"
        );
        let c = k.verify_feedback(&t).unwrap();
        assert_eq!(
            (c.sub.as_str(), c.room.as_str(), c.meeting.as_deref()),
            ("house-1", "demo", Some("m1"))
        );
        assert_eq!(c.jti.len(), 32);
        let other = k.issue_feedback("house-1", "demo", "m1", "p", Duration::from_secs(60));
        assert_ne!(
            k.verify_feedback(&other).unwrap().jti,
            c.jti,
            "each token its own id"
        );
        let house = house_1(&k);
        assert!(k.verify(&house).is_ok());
        assert!(matches!(
            k.verify_feedback(&house),
            Err(AuthError::WrongRole { have: "house", .. })
        ));
    }

    #[test]
    fn turn_credentials_match_coturn_rest_formula() {
        // Known vector: HMAC-SHA1("secret", "1700000000:house-1"), computed independently with
        // `printf %s 1700000000:house-1 | openssl dgst -sha1 -hmac secret -binary | base64`.
        use base64::Engine;
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, b"secret");
        let tag = ring::hmac::sign(&key, b"1700000000:house-1");
        let b64 = base64::engine::general_purpose::STANDARD.encode(tag.as_ref());
        assert_eq!(b64, "9ejjwEZt2TKRSgWwCiBm9MYElFQ=");
        let (user, pass) = turn_credentials("secret", "house-1", Duration::from_secs(3600));
        assert!(user.ends_with(":house-1"));
        assert_eq!(pass.len(), 28);
    }
}
