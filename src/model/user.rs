//! Users and user groups: the stored shapes, the public `UserRead` shape and
//! the parsing of request bodies that create or change them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::validate::{Fields, ValidationItem};
/// The e-mail rules, here too because callers reach them as user rules.
pub use super::validate::{email_key, normalize_email};

/// Group whose members may edit every node; created at start-up.
pub const NODE_EDIT_ANY: &str = "node:edit:any";

/// A user group: `{"id", "name"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// The group's object id.
    pub id: String,
    /// The unique group name.
    pub name: String,
}

impl Group {
    /// The group as every endpoint returns it (`id` first).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("a group is plain strings")
    }
}

/// A user account. Serialised, it is `UserRead`, the public shape in the
/// contract's key order (also the stored document); the password hash is
/// never part of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The user's object id.
    pub id: String,
    /// The e-mail address as given (domain lower-cased).
    pub email: String,
    /// Whether the account may log in.
    pub is_active: bool,
    /// Whether the user is an administrator.
    pub is_superuser: bool,
    /// Whether the e-mail address was confirmed.
    pub is_verified: bool,
    /// The unique user name.
    pub username: String,
    /// The groups the user is a member of.
    pub groups: Vec<Group>,
    /// The password hash; kept in its own column, never serialised.
    #[serde(skip)]
    pub hashed_password: String,
}

impl User {
    /// Whether this user is an active superuser (can administer).
    pub fn administers(&self) -> bool {
        self.is_active && self.is_superuser
    }

    /// `UserRead`: the public shape, keys in the contract's order.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("a user is plain strings and flags")
    }

    /// The key that makes e-mail addresses unique case-insensitively.
    pub fn email_key(&self) -> String {
        email_key(&self.email)
    }

    /// Whether the user is in the group called `name`.
    pub fn in_group(&self, name: &str) -> bool {
        self.groups.iter().any(|g| g.name == name)
    }
}

/// `POST /user/register` body.
pub struct NewUser {
    /// The user name (non-empty).
    pub username: String,
    /// The validated e-mail address.
    pub email: String,
    /// The password in clear, to be hashed.
    pub password: String,
    /// Whether the user is an administrator (default false).
    pub is_superuser: bool,
    /// Names of the groups to join (distinct).
    pub groups: Vec<String>,
}

impl NewUser {
    /// Parses and validates a register body (`is_active`/`is_verified` ignored).
    pub fn parse(body: &Value) -> Result<NewUser, Vec<ValidationItem>> {
        let mut f = Fields::new(body);
        let username = f.required_str("username");
        let email = f.email("email", true);
        let password = f.required_str("password");
        let is_superuser = f.optional_bool("is_superuser");
        let groups = f.optional_unique_strings("groups");
        if let Some(name) = &username
            && name.is_empty()
        {
            f.fail(
                "username",
                "String should have at least 1 character",
                "string_too_short",
            );
        }
        f.finish()?;
        Ok(NewUser {
            username: username.unwrap_or_default(),
            email: email.unwrap_or_default(),
            password: password.unwrap_or_default(),
            is_superuser: is_superuser.unwrap_or(false),
            groups: groups.unwrap_or_default(),
        })
    }
}

/// A change to a user: by the user itself (`/user/me`) or by an admin.
#[derive(Default)]
pub struct UserPatch {
    /// A new user name (non-empty).
    pub username: Option<String>,
    /// A new, validated e-mail address.
    pub email: Option<String>,
    /// A new password in clear, to be hashed.
    pub password: Option<String>,
    /// A new `is_active` flag (admins only).
    pub is_active: Option<bool>,
    /// A new `is_superuser` flag (admins only).
    pub is_superuser: Option<bool>,
    /// A new `is_verified` flag (admins only).
    pub is_verified: Option<bool>,
    /// The new list of group names (distinct), replacing the old one.
    pub groups: Option<Vec<String>>,
}

impl UserPatch {
    /// Parses a PATCH body. Flags are read for admins and dropped for
    /// `/user/me` by the caller.
    pub fn parse(body: &Value) -> Result<UserPatch, Vec<ValidationItem>> {
        let mut f = Fields::new(body);
        let patch = UserPatch {
            username: f.optional_str("username"),
            email: f.email("email", false),
            password: f.optional_str("password"),
            is_active: f.optional_bool("is_active"),
            is_superuser: f.optional_bool("is_superuser"),
            is_verified: f.optional_bool("is_verified"),
            groups: f.optional_unique_strings("groups"),
        };
        if patch.username.as_deref() == Some("") {
            f.fail(
                "username",
                "String should have at least 1 character",
                "string_too_short",
            );
        }
        f.finish()?;
        Ok(patch)
    }
}

/// `POST /user/invite` body with the contract's defaults.
pub struct Invite {
    /// The user name (non-empty).
    pub username: String,
    /// The validated e-mail address.
    pub email: String,
    /// Names of the groups to join (distinct).
    pub groups: Vec<String>,
    /// Whether the user is an administrator (default false).
    pub is_superuser: bool,
    /// Whether to e-mail the invitation (default true).
    pub send_email: bool,
    /// Whether to return the invitation token in the answer (default false).
    pub return_token: bool,
    /// Whether to invite again a user that already exists (default false).
    pub resend_if_exists: bool,
}

impl Invite {
    /// Parses and validates an invite body, applying the defaults.
    pub fn parse(body: &Value) -> Result<Invite, Vec<ValidationItem>> {
        let mut f = Fields::new(body);
        let username = f.required_str("username");
        let email = f.email("email", true);
        let groups = f.optional_unique_strings("groups");
        let is_superuser = f.optional_bool("is_superuser");
        let send_email = f.optional_bool("send_email");
        let return_token = f.optional_bool("return_token");
        let resend_if_exists = f.optional_bool("resend_if_exists");
        if username.as_deref() == Some("") {
            f.fail(
                "username",
                "String should have at least 1 character",
                "string_too_short",
            );
        }
        f.finish()?;
        Ok(Invite {
            username: username.unwrap_or_default(),
            email: email.unwrap_or_default(),
            groups: groups.unwrap_or_default(),
            is_superuser: is_superuser.unwrap_or(false),
            send_email: send_email.unwrap_or(true),
            return_token: return_token.unwrap_or(false),
            resend_if_exists: resend_if_exists.unwrap_or(false),
        })
    }
}

/// `POST /user-groups` / `POST /group` body: the name, which must be a
/// non-empty string.
pub fn parse_group_name(body: &Value) -> Result<String, Vec<ValidationItem>> {
    let mut f = Fields::new(body);
    let name = f.required_str("name");
    if name.as_deref() == Some("") {
        f.fail(
            "name",
            "String should have at least 1 character",
            "string_too_short",
        );
    }
    f.finish()?;
    Ok(name.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn user_doc_round_trip() {
        let user = User {
            id: "0123456789abcdef01234567".into(),
            email: "a@example.com".into(),
            is_active: true,
            is_superuser: false,
            is_verified: true,
            username: "a".into(),
            groups: vec![Group {
                id: "0123456789abcdef01234568".into(),
                name: "g".into(),
            }],
            hashed_password: "$2b$04$x".into(),
        };
        let doc = user.to_json();
        let keys: Vec<_> = doc
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        assert_eq!(
            keys,
            [
                "id",
                "email",
                "is_active",
                "is_superuser",
                "is_verified",
                "username",
                "groups"
            ]
        );
        assert!(!doc.to_string().contains("$2b$"));
        let mut read: User = serde_json::from_value(doc).expect("a stored user");
        read.hashed_password = user.hashed_password.clone();
        assert_eq!(read, user);
    }

    #[test]
    fn register_validation() {
        let err = NewUser::parse(&json!({"username": "u", "email": "bad"}))
            .err()
            .expect("bad");
        let locs: Vec<_> = err.iter().map(|e| e.loc[1].clone()).collect();
        assert_eq!(locs, [json!("email"), json!("password")]);
        let ok = NewUser::parse(&json!({"username": "u", "email": "u@example.com",
            "password": "p", "is_superuser": 1, "groups": ["g"]}))
        .expect("valid");
        assert!(ok.is_superuser);
        assert_eq!(ok.groups, ["g"]);
    }
}
