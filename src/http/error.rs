//! The API layer's one error type and the one place that picks an HTTP
//! status for a failure: every lower layer's error becomes an [`ApiError`]
//! here, and what a client sees is always `{"detail": …}`; a cause goes to
//! the log only.

use serde_json::{Value, json};

use crate::auth::AuthError;
use crate::model::node::NodeError;
use crate::model::validate::ValidationItem;
use crate::pubsub::{AckError, BrokerError};
use crate::query::QueryError;
use crate::store::StoreError;

use super::Resp;

/// Every failure of a request, as the client sees it: a status and a
/// `detail`; `cause` is only for the log.
#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    pub detail: Value,
    pub cause: Option<String>,
}

/// What handlers return.
pub type ApiResult = Result<Resp, ApiError>;

impl ApiError {
    fn new(status: u16, detail: &str) -> ApiError {
        ApiError {
            status,
            detail: Value::String(detail.to_string()),
            cause: None,
        }
    }

    /// 400 with a text detail.
    pub fn bad_request(detail: &str) -> ApiError {
        ApiError::new(400, detail)
    }

    /// 401 `Unauthorized`: no, bad or dead token.
    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized")
    }

    /// 401 with a text detail: the caller may not do this to the resource.
    pub fn denied(detail: &str) -> ApiError {
        ApiError::new(401, detail)
    }

    /// 403 `Forbidden`: authenticated but lacking the role.
    pub fn forbidden() -> ApiError {
        ApiError::new(403, "Forbidden")
    }

    /// 403 with a text detail: the resource belongs to someone else.
    pub fn not_owner(detail: &str) -> ApiError {
        ApiError::new(403, detail)
    }

    /// 404 with a text detail.
    pub fn not_found(detail: &str) -> ApiError {
        ApiError::new(404, detail)
    }

    /// 405 for a known path with a method it does not serve.
    pub fn method_not_allowed() -> ApiError {
        ApiError::new(405, "Method Not Allowed")
    }

    /// 409 with a text detail.
    pub fn conflict(detail: &str) -> ApiError {
        ApiError::new(409, detail)
    }

    /// 429 with a text detail: a per-user limit is reached.
    pub fn too_many(detail: &str) -> ApiError {
        ApiError::new(429, detail)
    }

    /// 413: the body is over `KCI_MAX_BODY_BYTES`.
    pub fn too_large() -> ApiError {
        ApiError::new(413, "Request body too large")
    }

    /// 413 naming the limit of the body's content that was passed.
    pub fn too_large_because(detail: &str) -> ApiError {
        ApiError::new(413, detail)
    }

    /// 422 with FastAPI's list of problems.
    pub fn validation(items: Vec<ValidationItem>) -> ApiError {
        ApiError {
            status: 422,
            detail: Value::Array(items.iter().map(ValidationItem::to_json).collect()),
            cause: None,
        }
    }

    /// 422 for one query parameter.
    pub fn query_invalid(name: &str, msg: &str, kind: &str) -> ApiError {
        ApiError::validation(vec![ValidationItem::new(
            vec![json!("query"), json!(name)],
            msg,
            kind,
        )])
    }

    /// 503 with a text detail: try again later; `cause` goes to the log.
    pub fn unavailable(detail: &str, cause: impl Into<String>) -> ApiError {
        ApiError {
            status: 503,
            detail: Value::String(detail.to_string()),
            cause: Some(cause.into()),
        }
    }

    /// 500: a real server fault; `cause` goes to the log only.
    pub fn internal(cause: impl Into<String>) -> ApiError {
        ApiError {
            status: 500,
            detail: Value::String("Internal server error".to_string()),
            cause: Some(cause.into()),
        }
    }

    /// 500 with a specific client-facing detail (e.g. a mail failure).
    pub fn internal_detail(detail: &str, cause: impl Into<String>) -> ApiError {
        ApiError {
            status: 500,
            detail: Value::String(detail.to_string()),
            cause: Some(cause.into()),
        }
    }

    /// The response sent to the client.
    pub fn to_resp(&self) -> Resp {
        Resp::json_status(self.status, &json!({"detail": self.detail}))
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> ApiError {
        match err {
            StoreError::NotFound => ApiError::not_found("Not Found"),
            // SQLite's text names tables and columns: the log has it.
            StoreError::Conflict(cause) => ApiError {
                cause: Some(format!("constraint violated: {cause}")),
                ..ApiError::bad_request("The request conflicts with stored data")
            },
            StoreError::Busy => ApiError::unavailable("Database busy, try again", "database busy"),
            StoreError::Internal(cause) => ApiError::internal(cause),
        }
    }
}

impl From<BrokerError> for ApiError {
    fn from(err: BrokerError) -> ApiError {
        match err {
            BrokerError::NotFound(id) => ApiError::not_found(&format!(
                "Subscription id not found: 'Subscription {id} not found'"
            )),
            BrokerError::NotOwner { id, user } => {
                ApiError::not_owner(&format!("Subscription {id} not owned by {user}"))
            }
            BrokerError::SubscriberTaken(sid) => {
                ApiError::not_owner(&format!("Subscriber {sid} owned by different user"))
            }
            BrokerError::TooManySubscriptions { user, limit } => ApiError::too_many(&format!(
                "Too many subscriptions for user {user}: at most {limit} \
                 (KCI_MAX_SUBSCRIPTIONS_PER_USER); unsubscribe some first"
            )),
            BrokerError::ShuttingDown => ApiError::unavailable(
                "Server is shutting down",
                "parked request ended at shutdown",
            ),
            BrokerError::Store(err) => ApiError::from(err),
        }
    }
}

impl From<AckError> for ApiError {
    fn from(err: AckError) -> ApiError {
        match err {
            AckError::Broker(err) => ApiError::from(err),
            AckError::NotExplicit(id) => ApiError::bad_request(&format!(
                "Subscription {id} does not acknowledge explicitly \
                 (subscribe with subscriber_id and ack=explicit)"
            )),
            AckError::Beyond { seq, passed } => ApiError::bad_request(&format!(
                "Cannot acknowledge sequence_id {seq}: the subscription has only \
                 passed up to {passed}"
            )),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> ApiError {
        match err {
            AuthError::Unauthorized => ApiError::unauthorized(),
            AuthError::Forbidden => ApiError::forbidden(),
            AuthError::Internal(cause) => ApiError::internal(cause),
        }
    }
}

impl From<NodeError> for ApiError {
    fn from(err: NodeError) -> ApiError {
        match err {
            NodeError::Invalid(items) => ApiError::validation(items),
            NodeError::Rejected(detail) => ApiError::bad_request(&detail),
        }
    }
}

impl From<QueryError> for ApiError {
    fn from(err: QueryError) -> ApiError {
        ApiError::bad_request(&err.0)
    }
}

impl From<Vec<ValidationItem>> for ApiError {
    fn from(items: Vec<ValidationItem>) -> ApiError {
        ApiError::validation(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detail(err: ApiError) -> (u16, Value, bool) {
        (err.status, err.detail, err.cause.is_some())
    }

    #[test]
    fn store_errors_keep_sqlite_text_out_of_the_answer() {
        let err = ApiError::from(StoreError::Conflict(
            "UNIQUE constraint failed: user.email".into(),
        ));
        assert_eq!(err.status, 400);
        assert!(!err.detail.to_string().contains("UNIQUE"), "{}", err.detail);
        assert!(err.cause.is_some_and(|c| c.contains("user.email")));
        assert_eq!(detail(StoreError::Busy.into()).0, 503);
        let internal = ApiError::from(StoreError::Internal("disk I/O error".into()));
        assert_eq!(
            detail(internal),
            (500, json!("Internal server error"), true)
        );
    }

    #[test]
    fn broker_and_auth_errors_have_their_statuses() {
        assert_eq!(detail(BrokerError::NotFound(7).into()).0, 404);
        let not_owner = BrokerError::NotOwner {
            id: 7,
            user: "ann".into(),
        };
        assert_eq!(
            detail(not_owner.into()),
            (403, json!("Subscription 7 not owned by ann"), false)
        );
        assert_eq!(detail(BrokerError::ShuttingDown.into()).0, 503);
        assert_eq!(
            detail(AuthError::Unauthorized.into()),
            (401, json!("Unauthorized"), false)
        );
        assert_eq!(
            detail(AuthError::Forbidden.into()),
            (403, json!("Forbidden"), false)
        );
        assert_eq!(detail(AuthError::Internal("x".into()).into()).0, 500);
    }
}
