//! Users and user groups: the stored shapes, the public `UserRead` shape and
//! the parsing of request bodies that create or change them.

use serde_json::{Value, json};

use super::validate::{Fields, ValidationItem};

/// Group whose members may edit every node; created at start-up.
pub const NODE_EDIT_ANY: &str = "node:edit:any";

/// A user group: `{"id", "name"}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub id: String,
    pub name: String,
}

impl Group {
    /// The group as every endpoint returns it (`id` first).
    pub fn to_json(&self) -> Value {
        json!({"id": self.id, "name": self.name})
    }

    /// Reads a group from its JSON form.
    pub fn from_json(value: &Value) -> Option<Group> {
        Some(Group {
            id: value.get("id")?.as_str()?.to_string(),
            name: value.get("name")?.as_str()?.to_string(),
        })
    }
}

/// A user account, password hash included (never sent to a client).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub email: String,
    pub is_active: bool,
    pub is_superuser: bool,
    pub is_verified: bool,
    pub username: String,
    pub groups: Vec<Group>,
    pub hashed_password: String,
}

impl User {
    /// `UserRead`: the public shape, keys in the contract's order.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "email": self.email,
            "is_active": self.is_active,
            "is_superuser": self.is_superuser,
            "is_verified": self.is_verified,
            "username": self.username,
            "groups": self.groups.iter().map(Group::to_json).collect::<Vec<_>>(),
        })
    }

    /// Rebuilds a user from its stored document and hash.
    pub fn from_doc(doc: &Value, hashed_password: String) -> Option<User> {
        Some(User {
            id: doc.get("id")?.as_str()?.to_string(),
            email: doc.get("email")?.as_str()?.to_string(),
            is_active: doc.get("is_active")?.as_bool()?,
            is_superuser: doc.get("is_superuser")?.as_bool()?,
            is_verified: doc.get("is_verified")?.as_bool()?,
            username: doc.get("username")?.as_str()?.to_string(),
            groups: doc
                .get("groups")?
                .as_array()?
                .iter()
                .map(Group::from_json)
                .collect::<Option<Vec<_>>>()?,
            hashed_password,
        })
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

/// Case-insensitive identity of an e-mail address.
pub fn email_key(email: &str) -> String {
    email.to_lowercase()
}

/// Validates an e-mail address; returns it with the domain lower-cased.
pub fn normalize_email(text: &str) -> Option<String> {
    let text = text.trim();
    let (local, domain) = text.rsplit_once('@')?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && !"@<>()[]\\,;:\"".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && domain.len() <= 253
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.chars().any(|c| c.is_alphabetic()));
    (local_ok && domain_ok).then(|| format!("{local}@{}", domain.to_lowercase()))
}

/// `POST /user/register` body.
pub struct NewUser {
    pub username: String,
    pub email: String,
    pub password: String,
    pub is_superuser: bool,
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
    pub username: Option<String>,
    pub email: Option<String>,
    pub password: Option<String>,
    pub is_active: Option<bool>,
    pub is_superuser: Option<bool>,
    pub is_verified: Option<bool>,
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
    pub username: String,
    pub email: String,
    pub groups: Vec<String>,
    pub is_superuser: bool,
    pub send_email: bool,
    pub return_token: bool,
    pub resend_if_exists: bool,
}

impl Invite {
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

    #[test]
    fn email_rules() {
        assert_eq!(
            normalize_email("Bob@Example.COM").as_deref(),
            Some("Bob@example.com")
        );
        for bad in [
            "nope",
            "a@b",
            "@example.com",
            "a b@example.com",
            "a@-x.com",
            "a@x..com",
        ] {
            assert!(normalize_email(bad).is_none(), "{bad}");
        }
    }

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
        assert_eq!(
            User::from_doc(&doc, user.hashed_password.clone()),
            Some(user)
        );
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
