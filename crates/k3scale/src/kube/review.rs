//! Who may read k3scale's HTTP API: the caller's bearer token, checked by
//! the API server (TokenReview), then its right to `get` the path
//! (SubjectAccessReview on a non-resource URL), as kube-rbac-proxy does.
//! Answers are kept a minute, so a Prometheus scraping every 15 s costs
//! two API requests a minute, not eight.

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Why a caller is turned away.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No token, or one the API server does not know: 401.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// A known user without `get` on the path: 403.
    #[error("{user} may not get {path}")]
    Forbidden { user: String, path: String },
    /// The API server could not be asked: 503 (never let in by default).
    #[error("cannot check the token now: {0}")]
    Unavailable(String),
}

/// How long an answer is reused.
const KEEP: Duration = Duration::from_secs(60);

/// An answer and when it was given.
type Answer = (Instant, Result<(), Denied>);

pub struct Reviewer {
    client: kube::Client,
    /// (token, path) → answer.
    answers: Mutex<HashMap<(String, String), Answer>>,
}

impl std::fmt::Debug for Reviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the tokens.
        f.debug_struct("Reviewer").finish_non_exhaustive()
    }
}

impl Reviewer {
    pub fn new(client: kube::Client) -> Reviewer {
        Reviewer {
            client,
            answers: Mutex::new(HashMap::new()),
        }
    }

    /// May the holder of `token` `get` `path`?
    pub async fn check(&self, token: &str, path: &str) -> Result<(), Denied> {
        let key = (token.to_string(), path.to_string());
        {
            let mut answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
            answers.retain(|_, (at, _)| at.elapsed() < KEEP);
            if let Some((_, answer)) = answers.get(&key) {
                return answer.clone();
            }
        }
        let answer = self.ask(token, path).await;
        // An API server that could not answer is asked again next time.
        if !matches!(answer, Err(Denied::Unavailable(_))) {
            let mut answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
            answers.insert(key, (Instant::now(), answer.clone()));
        }
        answer
    }

    async fn ask(&self, token: &str, path: &str) -> Result<(), Denied> {
        let unavailable = |e: kube::Error| Denied::Unavailable(super::root_cause(&e));
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                ..TokenReviewSpec::default()
            },
            ..TokenReview::default()
        };
        let reviewed = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(unavailable)?;
        let status = reviewed.status.unwrap_or_default();
        let user = status.user.unwrap_or_default();
        let Some(username) = user.username.filter(|_| status.authenticated == Some(true)) else {
            let why = status.error.unwrap_or_else(|| "token not authenticated".into());
            return Err(Denied::Unauthenticated(why));
        };
        let access = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(username.clone()),
                groups: user.groups,
                uid: user.uid,
                extra: user.extra,
                non_resource_attributes: Some(NonResourceAttributes {
                    path: Some(path.to_string()),
                    verb: Some("get".into()),
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let decided = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &access)
            .await
            .map_err(unavailable)?;
        if decided.status.is_some_and(|s| s.allowed) {
            Ok(())
        } else {
            Err(Denied::Forbidden {
                user: username,
                path: path.to_string(),
            })
        }
    }
}
