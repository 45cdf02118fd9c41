//! Principals and their tokens: who may act on writ.
//!
//! Every change here is a ledger event (`principal_created`, `principal_changed`,
//! `principal_disabled`, `token_issued`, `token_revoked`), appended through the sequencer with
//! a conditional expectation on the principal's version, so two admins cannot silently
//! overwrite each other and a name is created once. Only an enabled admin manages principals,
//! except for the very first admin of an empty database (the operator's local bootstrap).
//!
//! A token's secret is drawn from the injected [`RandomSource`], returned to the caller once,
//! and kept nowhere: the ledger and the store hold its SHA-256 only. Authentication hashes the
//! presented token and looks the digest up; a revoked or expired token, or one whose principal
//! is disabled, does not authenticate.

use std::collections::BTreeSet;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use writ_core::event::{EventBody, PrincipalRecorded, TokenIssued, TokenRevoked};
use writ_core::finding::Trust;
use writ_core::ids::{PrincipalId, TokenId};
use writ_core::principal::{
    NewToken, Principal, PrincipalError, PrincipalKind, Role, TokenRecord, canonical_name,
    canonical_teams, token_digest,
};
use writ_core::{Clock, IdSource, RandomSource};
use writ_store::{Expectation, PrincipalView, Store, StoreError, TokenView};

use crate::auth_cache::AuthCache;
use crate::sequencer::{AppendError, Draft, Sequencer};

/// What an admin asks for when adding a principal.
#[derive(Debug, Clone)]
pub struct NewPrincipal {
    /// The name as typed (canonicalised here).
    pub name: String,
    /// Person or service.
    pub kind: PrincipalKind,
    /// Teams as typed.
    pub teams: Vec<String>,
    /// Roles.
    pub roles: Vec<Role>,
    /// Trust, for sources.
    pub trust: Option<Trust>,
    /// How long its first token lives (`None`: until revoked).
    pub token_ttl: Option<SignedDuration>,
}

/// What an admin asks to change; `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct PrincipalChange {
    /// The new teams.
    pub teams: Option<Vec<String>>,
    /// The new roles.
    pub roles: Option<Vec<Role>>,
    /// The new trust.
    pub trust: Option<Trust>,
}

/// Why a principal operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum PrincipalsError {
    /// The record would be invalid (name, teams, roles, trust).
    #[error(transparent)]
    Invalid(#[from] PrincipalError),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// No such principal or token.
    #[error("{0}")]
    NotFound(String),
    /// The name is taken, or the principal changed meanwhile.
    #[error("{0}")]
    Conflict(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The ledger refused the event; nothing changed.
    #[error(transparent)]
    Append(AppendError),
    /// No randomness for the token.
    #[error(transparent)]
    Random(#[from] writ_core::clock::RandomUnavailable),
}

/// Why a presented token does not authenticate. Deliberately vague towards the caller: the
/// same answer whether the token is unknown, revoked, expired or its principal disabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejected {
    /// Not a token writ issued, or no longer valid.
    #[error("the token is not valid (unknown, expired, revoked, or its principal is disabled)")]
    Invalid,
}

/// Principals and tokens, over the ledger.
#[derive(Debug, Clone)]
pub struct Principals {
    store: Arc<dyn Store>,
    sequencer: Sequencer,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdSource>,
    random: Arc<dyn RandomSource>,
    /// Recent authentications (shared by every clone; emptied on each change made here).
    recent: Arc<AuthCache>,
}

/// The actor recorded for a principal's own actions.
pub fn actor_of(principal: &Principal) -> String {
    match principal.kind {
        PrincipalKind::Person => format!("user:{}", principal.name),
        PrincipalKind::Service => format!("service:{}", principal.name),
    }
}

/// The actor of what `writ serve` records from the `[[sources]]` configuration.
pub const CONFIG_ACTOR: &str = "operator:config";

/// Revokes a token the configuration issued, as the configuration.
fn config_revoke_draft(token: &TokenView, reason: &str) -> Draft {
    Draft::new(
        None,
        CONFIG_ACTOR,
        format!("token:revoke:{}", token.token.id),
        EventBody::TokenRevoked(TokenRevoked {
            token: token.token.id,
            principal: token.token.principal.clone(),
            reason: reason.to_owned(),
        }),
    )
}

/// The actor of the operator's local bootstrap.
pub const BOOTSTRAP_ACTOR: &str = "operator:bootstrap";

impl Principals {
    /// The service over `store`, appending through `sequencer`.
    pub fn new(
        store: Arc<dyn Store>,
        sequencer: Sequencer,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdSource>,
        random: Arc<dyn RandomSource>,
    ) -> Self {
        Self {
            store,
            sequencer,
            clock,
            ids,
            random,
            recent: Arc::new(AuthCache::default()),
        }
    }

    /// Keeps successful authentications for `ttl` (zero, the default: not at all), so that a
    /// busy client's requests do not each read the store. A change made through this service
    /// takes effect at once; one made through another replica, within `ttl`.
    pub fn with_auth_cache(mut self, ttl: std::time::Duration) -> Self {
        self.recent = Arc::new(AuthCache::new(ttl));
        self
    }

    /// Creates the first admin (no admin exists yet; source principals made from
    /// `[[sources]]` may). Run locally by the operator; refused once any admin exists.
    pub async fn bootstrap(
        &self,
        new: NewPrincipal,
    ) -> Result<(Principal, NewToken), PrincipalsError> {
        if !new.roles.contains(&Role::Admin) {
            return Err(PrincipalsError::Forbidden(
                "the bootstrap principal must have the admin role (--role admin)".into(),
            ));
        }
        // Source principals made from `[[sources]]` by `writ serve` do not count: the first
        // admin can be made whenever no admin exists yet (enabled or not: a disabled admin
        // is re-enabled by another admin, not replaced by a bootstrap).
        if self.admin_exists().await? {
            return Err(PrincipalsError::Forbidden(
                "an admin exists already: --bootstrap only makes the first admin; ask an admin to add principals".into(),
            ));
        }
        // One bootstrap per ledger: its idempotency key is fixed, so a second bootstrap that
        // raced the first comes back as a duplicate and is refused below.
        self.create_as(BOOTSTRAP_ACTOR, "principal:bootstrap", new)
            .await
    }

    /// Whether any principal has the admin role (enabled or not): until one does, the first
    /// admin may be bootstrapped.
    pub async fn admin_exists(&self) -> Result<bool, PrincipalsError> {
        Ok(self
            .store
            .principals()
            .await?
            .iter()
            .any(|view| view.principal.has_role(Role::Admin)))
    }

    /// Creates a principal and its first token. `by` must be an enabled admin.
    pub async fn create(
        &self,
        by: &Principal,
        new: NewPrincipal,
    ) -> Result<(Principal, NewToken), PrincipalsError> {
        require_admin(by, "add principals")?;
        let key = format!("principal:create:{}", self.ids.next_id(self.clock.now()));
        self.create_as(&actor_of(by), &key, new).await
    }

    async fn create_as(
        &self,
        actor: &str,
        key: &str,
        new: NewPrincipal,
    ) -> Result<(Principal, NewToken), PrincipalsError> {
        let now = self.clock.now();
        let principal = Principal::new(
            PrincipalId(self.ids.next_id(now)),
            &new.name,
            new.kind,
            &new.teams,
            new.roles.iter().copied(),
            default_trust(new.roles.contains(&Role::Source), new.trust),
        )?;
        if self.store.principal(&principal.name).await?.is_some() {
            return Err(PrincipalsError::Conflict(format!(
                "a principal named {:?} exists already",
                principal.name
            )));
        }
        let (record, token) = self.new_token(&principal.name, new.token_ttl)?;
        let created = Draft {
            expect: vec![Expectation::Principal {
                name: principal.name.clone(),
                updated_seq: None,
            }],
            ..Draft::new(
                None,
                actor,
                key,
                EventBody::PrincipalCreated(PrincipalRecorded {
                    principal: principal.clone(),
                    reason: None,
                }),
            )
        };
        let issued = self.token_draft(actor, record);
        let appended = self.append(vec![created, issued]).await?;
        if appended.iter().any(|a| a.duplicate) {
            return Err(PrincipalsError::Conflict(
                "this principal was created already (the bootstrap runs once)".into(),
            ));
        }
        Ok((principal, token))
    }

    /// Changes a principal's teams, roles or trust. `by` must be an enabled admin.
    pub async fn change(
        &self,
        by: &Principal,
        name: &str,
        change: PrincipalChange,
        reason: Option<String>,
    ) -> Result<Principal, PrincipalsError> {
        require_admin(by, "change principals")?;
        let view = self.get(name).await?;
        // Separation of duties: nobody grants itself a role or a team (an admin making itself
        // an approver of the owner team, then approving). Another admin does it, on the record.
        if view.principal.id == by.id
            && (change.teams.is_some() || change.roles.is_some() || change.trust.is_some())
        {
            return Err(PrincipalsError::Forbidden(
                "a principal cannot change its own teams, roles or trust; ask another admin".into(),
            ));
        }
        let mut principal = view.principal.clone();
        if let Some(teams) = &change.teams {
            principal.teams = canonical_teams(teams)?;
        }
        if let Some(roles) = &change.roles {
            principal.roles = roles.iter().copied().collect();
        }
        if change.trust.is_some() {
            principal.trust = change.trust;
        }
        principal.trust = default_trust(principal.roles.contains(&Role::Source), principal.trust);
        principal.validate()?;
        let draft = self.versioned_draft(
            by,
            &view,
            "change",
            EventBody::PrincipalChanged(PrincipalRecorded {
                principal: principal.clone(),
                reason,
            }),
        );
        self.append(vec![draft]).await?;
        Ok(principal)
    }

    /// Disables a principal and revokes every token it holds, in one ledger group. `by` must
    /// be an enabled admin; an admin cannot disable itself (there would be nobody left to undo
    /// a mistake, and it is not a separation-of-duties shortcut either).
    pub async fn disable(
        &self,
        by: &Principal,
        name: &str,
        reason: String,
    ) -> Result<Principal, PrincipalsError> {
        require_admin(by, "disable principals")?;
        let view = self.get(name).await?;
        if view.principal.id == by.id {
            return Err(PrincipalsError::Forbidden(
                "an admin cannot disable itself; ask another admin".into(),
            ));
        }
        if view.principal.disabled {
            return Err(PrincipalsError::Conflict(format!(
                "{} is disabled already",
                view.principal.name
            )));
        }
        let mut principal = view.principal.clone();
        principal.disabled = true;
        let mut group = vec![self.versioned_draft(
            by,
            &view,
            "disable",
            EventBody::PrincipalDisabled(PrincipalRecorded {
                principal: principal.clone(),
                reason: Some(reason),
            }),
        )];
        for token in self.store.tokens_of(&principal.name).await? {
            if !token.revoked {
                group.push(self.revoke_draft(by, &token, "principal disabled"));
            }
        }
        self.append(group).await?;
        Ok(principal)
    }

    /// Issues a new token to `name`. `by` must be an enabled admin.
    pub async fn issue_token(
        &self,
        by: &Principal,
        name: &str,
        ttl: Option<SignedDuration>,
    ) -> Result<(TokenRecord, NewToken), PrincipalsError> {
        require_admin(by, "issue tokens")?;
        let view = self.get(name).await?;
        if view.principal.disabled {
            return Err(PrincipalsError::Conflict(format!(
                "{} is disabled; it gets no tokens",
                view.principal.name
            )));
        }
        let (record, token) = self.new_token(&view.principal.name, ttl)?;
        let mut draft = self.token_draft(&actor_of(by), record.clone());
        draft.expect = vec![Expectation::Principal {
            name: view.principal.name.clone(),
            updated_seq: Some(view.updated_seq),
        }];
        self.append(vec![draft]).await?;
        Ok((record, token))
    }

    /// Revokes one token. `by` must be an enabled admin, or the token's own principal.
    pub async fn revoke_token(
        &self,
        by: &Principal,
        name: &str,
        token: TokenId,
    ) -> Result<(), PrincipalsError> {
        let name = lookup_name(name)?;
        if !(by.has_role(Role::Admin) || by.name == name) {
            return Err(PrincipalsError::Forbidden(
                "only an admin, or the token's own principal, revokes a token".into(),
            ));
        }
        let found = self
            .store
            .tokens_of(&name)
            .await?
            .into_iter()
            .find(|t| t.token.id == token)
            .ok_or_else(|| PrincipalsError::NotFound(format!("{name} has no token {token}")))?;
        if found.revoked {
            return Ok(());
        }
        self.append(vec![self.revoke_draft(by, &found, "revoked")])
            .await?;
        Ok(())
    }

    /// Makes a `[[sources]]` entry of the configuration a source principal: creates it (a
    /// service with the role `source` and the configured trust) if it does not exist, gives an
    /// existing one the role and trust, and records the configured token digest as its token.
    /// Each step is a ledger event by `operator:config`; a disabled principal stays disabled
    /// (its configuration is ignored, with a warning from the caller).
    ///
    /// Returns whether the principal is enabled.
    pub async fn reconcile_source(
        &self,
        name: &str,
        trust: Trust,
        token: Option<writ_core::Sha256Digest>,
    ) -> Result<bool, PrincipalsError> {
        const ACTOR: &str = CONFIG_ACTOR;
        let name = canonical(name)?;
        let now = self.clock.now();
        let mut group = Vec::new();
        match self.store.principal(&name).await? {
            None => {
                let principal = Principal::new(
                    PrincipalId(self.ids.next_id(now)),
                    &name,
                    PrincipalKind::Service,
                    Vec::<String>::new(),
                    [Role::Source],
                    Some(trust),
                )?;
                group.push(Draft {
                    expect: vec![Expectation::Principal {
                        name: name.clone(),
                        updated_seq: None,
                    }],
                    ..Draft::new(
                        None,
                        ACTOR,
                        format!("principal:config:{name}"),
                        EventBody::PrincipalCreated(PrincipalRecorded {
                            principal,
                            reason: Some("declared in [[sources]]".into()),
                        }),
                    )
                });
            }
            Some(view) if view.principal.disabled => return Ok(false),
            Some(view) => {
                let mut principal = view.principal.clone();
                principal.roles.insert(Role::Source);
                principal.trust = Some(trust);
                if principal != view.principal {
                    group.push(Draft {
                        expect: vec![Expectation::Principal {
                            name: name.clone(),
                            updated_seq: Some(view.updated_seq),
                        }],
                        ..Draft::new(
                            None,
                            ACTOR,
                            format!("principal:config:{name}:{}", view.updated_seq),
                            EventBody::PrincipalChanged(PrincipalRecorded {
                                principal,
                                reason: Some("declared in [[sources]]".into()),
                            }),
                        )
                    });
                }
            }
        }
        if let Some(digest) = token {
            match self.store.token_by_digest(&digest).await? {
                Some(found) if found.token.principal != name => {
                    return Err(PrincipalsError::Conflict(format!(
                        "source {name}: its token_sha256 belongs to principal {}",
                        found.token.principal
                    )));
                }
                Some(_) => {}
                None => group.push(Draft::new(
                    None,
                    ACTOR,
                    format!("token:config:{digest}"),
                    EventBody::TokenIssued(TokenIssued {
                        token: TokenRecord {
                            id: TokenId(self.ids.next_id(now)),
                            principal: name.clone(),
                            sha256: digest,
                            expires_at: None,
                        },
                    }),
                )),
            }
        }
        // A token the configuration issued earlier and no longer names stops working: changing
        // `token_sha256` (or replacing it with an HMAC secret) rotates the source's token.
        for old in self.config_tokens(&name).await? {
            if token.as_ref() != Some(&old.token.sha256) {
                group.push(config_revoke_draft(
                    &old,
                    "the [[sources]] entry no longer names this token",
                ));
            }
        }
        if !group.is_empty() {
            self.append(group).await?;
        }
        Ok(true)
    }

    /// Sets a person's teams to the ones their identity provider names at sign-in (the
    /// console's `[oidc] teams_claim`), recorded as `principal_changed` by `oidc:<issuer>`
    /// when they differ: the provider is the source of truth for team membership, and the
    /// ledger says when and from where each change came. Roles are never touched. Returns the
    /// principal as it is now.
    pub async fn sync_teams(
        &self,
        name: &str,
        teams: &[String],
        issuer: &str,
    ) -> Result<Principal, PrincipalsError> {
        let view = self.get(name).await?;
        let mut principal = view.principal.clone();
        principal.teams = canonical_teams(teams)?;
        if principal == view.principal {
            return Ok(principal);
        }
        principal.validate()?;
        let draft = Draft {
            expect: vec![Expectation::Principal {
                name: view.principal.name.clone(),
                updated_seq: Some(view.updated_seq),
            }],
            ..Draft::new(
                None,
                format!("oidc:{issuer}"),
                format!(
                    "principal:oidc-teams:{}:{}",
                    view.principal.name, view.updated_seq
                ),
                EventBody::PrincipalChanged(PrincipalRecorded {
                    principal: principal.clone(),
                    reason: Some(format!(
                        "teams from the identity provider {issuer} at sign-in"
                    )),
                }),
            )
        };
        self.append(vec![draft]).await?;
        Ok(principal)
    }

    /// Revokes the tokens that `[[sources]]` entries issued to source principals the
    /// configuration no longer declares (`configured`: the names it declares now). Returns how
    /// many were revoked. Tokens an admin issued over the API are left alone.
    pub async fn retire_unconfigured_sources(
        &self,
        configured: &[String],
    ) -> Result<usize, PrincipalsError> {
        let configured: BTreeSet<String> = configured
            .iter()
            .filter_map(|name| canonical_name(name).ok())
            .collect();
        let mut group = Vec::new();
        for view in self.store.principals().await? {
            let name = &view.principal.name;
            if configured.contains(name) || !view.principal.roles.contains(&Role::Source) {
                continue;
            }
            for old in self.config_tokens(name).await? {
                group.push(config_revoke_draft(
                    &old,
                    "the source is no longer declared in [[sources]]",
                ));
            }
        }
        let revoked = group.len();
        if !group.is_empty() {
            self.append(group).await?;
        }
        Ok(revoked)
    }

    /// The live tokens of `name` that a `[[sources]]` entry issued: those whose issuing ledger
    /// entry (read back and checked against its leaf) is by `operator:config`.
    async fn config_tokens(&self, name: &str) -> Result<Vec<TokenView>, PrincipalsError> {
        let live: Vec<TokenView> = self
            .store
            .tokens_of(name)
            .await?
            .into_iter()
            .filter(|t| !t.revoked)
            .collect();
        if live.is_empty() {
            return Ok(live);
        }
        let seqs: Vec<u64> = live.iter().map(|t| t.issued_seq).collect();
        let by_config: BTreeSet<u64> = self
            .store
            .entries_at(&seqs)
            .await?
            .iter()
            .filter_map(|row| crate::entries::decode(row).ok())
            .filter(|event| event.actor == CONFIG_ACTOR)
            .map(|event| event.seq)
            .collect();
        Ok(live
            .into_iter()
            .filter(|t| by_config.contains(&t.issued_seq))
            .collect())
    }

    /// One principal by name (canonicalised).
    pub async fn get(&self, name: &str) -> Result<PrincipalView, PrincipalsError> {
        let name = lookup_name(name)?;
        self.store
            .principal(&name)
            .await?
            .ok_or_else(|| PrincipalsError::NotFound(format!("no principal named {name:?}")))
    }

    /// Every principal.
    pub async fn list(&self) -> Result<Vec<PrincipalView>, PrincipalsError> {
        Ok(self.store.principals().await?)
    }

    /// A principal's tokens (digests and state; never secrets).
    pub async fn tokens(&self, name: &str) -> Result<Vec<TokenView>, PrincipalsError> {
        let name = self.get(name).await?.principal.name;
        Ok(self.store.tokens_of(&name).await?)
    }

    /// The principal a bearer token belongs to, if the token is live and the principal
    /// enabled.
    pub async fn authenticate(&self, secret: &str) -> Result<Principal, AuthFailure> {
        let digest = token_digest(secret);
        if let Some(principal) = self.recent.get(&digest, self.clock.now()) {
            return Ok(principal);
        }
        let generation = self.recent.generation();
        let token = self
            .store
            .token_by_digest(&digest)
            .await?
            .ok_or(AuthFailure::Rejected(TokenRejected::Invalid))?;
        if token.revoked || !token.token.is_live(self.clock.now()) {
            return Err(AuthFailure::Rejected(TokenRejected::Invalid));
        }
        let principal = self
            .store
            .principal(&token.token.principal)
            .await?
            .ok_or(AuthFailure::Rejected(TokenRejected::Invalid))?
            .principal;
        if principal.disabled {
            return Err(AuthFailure::Rejected(TokenRejected::Invalid));
        }
        self.recent
            .put(generation, digest, token.token, principal.clone());
        Ok(principal)
    }

    fn new_token(
        &self,
        principal: &str,
        ttl: Option<SignedDuration>,
    ) -> Result<(TokenRecord, NewToken), PrincipalsError> {
        let mut random = [0u8; 32];
        self.random.fill(&mut random)?;
        let token = NewToken::from_random(random);
        let now: Timestamp = self.clock.now();
        let record = TokenRecord {
            id: TokenId(self.ids.next_id(now)),
            principal: principal.to_owned(),
            sha256: token.sha256,
            expires_at: ttl.and_then(|ttl| now.checked_add(ttl).ok()),
        };
        Ok((record, token))
    }

    fn token_draft(&self, actor: &str, token: TokenRecord) -> Draft {
        Draft::new(
            None,
            actor,
            format!("token:issue:{}", token.id),
            EventBody::TokenIssued(TokenIssued { token }),
        )
    }

    fn revoke_draft(&self, by: &Principal, token: &TokenView, reason: &str) -> Draft {
        Draft::new(
            None,
            actor_of(by),
            format!("token:revoke:{}", token.token.id),
            EventBody::TokenRevoked(TokenRevoked {
                token: token.token.id,
                principal: token.token.principal.clone(),
                reason: reason.to_owned(),
            }),
        )
    }

    fn versioned_draft(
        &self,
        by: &Principal,
        view: &PrincipalView,
        what: &str,
        body: EventBody,
    ) -> Draft {
        Draft {
            expect: vec![Expectation::Principal {
                name: view.principal.name.clone(),
                updated_seq: Some(view.updated_seq),
            }],
            ..Draft::new(
                None,
                actor_of(by),
                format!(
                    "principal:{what}:{}:{}",
                    view.principal.name, view.updated_seq
                ),
                body,
            )
        }
    }

    async fn append(
        &self,
        group: Vec<Draft>,
    ) -> Result<Vec<crate::sequencer::Appended>, PrincipalsError> {
        let results = self.sequencer.append_group(group).await;
        // Whatever was appended, a cached authentication may now be wrong.
        self.recent.clear();
        results
            .into_iter()
            .map(|result| {
                result.map_err(|err| match err {
                    AppendError::Stale(why) => PrincipalsError::Conflict(format!(
                        "the principal changed meanwhile; read it again ({why})"
                    )),
                    AppendError::Conflict(why) => PrincipalsError::Conflict(why),
                    other => PrincipalsError::Append(other),
                })
            })
            .collect()
    }
}

/// Why authentication failed: the token, or the store.
#[derive(Debug, thiserror::Error)]
pub enum AuthFailure {
    /// The token does not authenticate.
    #[error(transparent)]
    Rejected(TokenRejected),
    /// The store could not be read (the caller answers 503, not 401).
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn require_admin(by: &Principal, what: &str) -> Result<(), PrincipalsError> {
    if by.has_role(Role::Admin) {
        Ok(())
    } else {
        Err(PrincipalsError::Forbidden(format!(
            "only an admin may {what}"
        )))
    }
}

/// The canonical form of a name looked up: one that cannot be canonical names nobody
/// (`NotFound`, as for any unknown name).
fn lookup_name(name: &str) -> Result<String, PrincipalsError> {
    canonical_name(name)
        .map_err(|_| PrincipalsError::NotFound(format!("no principal named {name:?}")))
}

fn canonical(name: &str) -> Result<String, PrincipalsError> {
    canonical_name(name).map_err(|error| {
        PrincipalsError::Invalid(PrincipalError::Name {
            raw: name.to_owned(),
            error,
        })
    })
}

/// The trust a principal is recorded with: as given; a source given none is trusted `low`
/// (the safe default: its findings never get automation that needs more).
fn default_trust(source: bool, trust: Option<Trust>) -> Option<Trust> {
    match trust {
        None if source => Some(Trust::Low),
        trust => trust,
    }
}

/// The roles a set of names means, for messages.
pub fn role_names(roles: &BTreeSet<Role>) -> String {
    roles
        .iter()
        .map(|r| <&str>::from(*r))
        .collect::<Vec<_>>()
        .join(",")
}

/// The operating system's random source.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsRandom;

impl RandomSource for OsRandom {
    // The one place tokens get their randomness: the OS source, never a fallback.
    #[allow(clippy::disallowed_methods)]
    fn fill(&self, buf: &mut [u8]) -> Result<(), writ_core::clock::RandomUnavailable> {
        getrandom::fill(buf).map_err(|_| writ_core::clock::RandomUnavailable)
    }
}
