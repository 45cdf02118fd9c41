//! writ connectors for AWS: [`AwsIam`] (IAM users and roles, access keys, policies, permissions
//! boundaries) and [`AwsSecretsManager`] (Secrets Manager secrets); and [`SecretsManagerSink`],
//! where other connectors' rotated secrets go.
//!
//! Both speak the AWS HTTP APIs directly, signed with SigV4 ([`AwsClient`]), so they work
//! against real AWS and against an emulator such as moto (set [`AwsConfig::endpoint`] or
//! `AWS_ENDPOINT_URL`). Credentials come from [`AwsConfig`] or the standard environment and
//! are never logged: every type holding them redacts its `Debug`.
//!
//! Error mapping, for both connectors: throttling, HTTP 5xx and transport failures are
//! [`writ_connectors::ConnectorError::Retryable`]; a 4xx refusal of a change (no such entity,
//! invalid state) is [`writ_connectors::ApplyOutcome::Rejected`]; a change already in effect is
//! [`writ_connectors::ApplyOutcome::AlreadyInState`].

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod client;
mod config;
mod error;
mod iam;
mod iam_accounts;
mod key_rotation;
pub mod s3;
mod secrets;
mod sigv4;
mod sink;
mod xml;

pub use client::AwsClient;
pub use config::{AwsConfig, SecretString, Service};
pub use error::AwsError;
pub use iam::AwsIam;
pub use secrets::{AwsSecretsManager, rotation_token};
pub use sink::{DEFAULT_SECRET_NAME, SecretsManagerSink};
