//! A client library for the TIBIOT open API v1 (docs/api.md): the [`Client`] (one request path
//! for every GET [`Query`], retries inside a caller-given deadline, a response-size cap), the
//! [`endpoint`] descriptions, the
//! account's [`Gate`] every attempt passes through, request [`sign`]ing, the lenient response
//! [`model`]s, the one [`ApiError`] type that tells the failure classes apart, and the API's
//! [`calendar`] (dates and months on the API's UTC offset).
//!
//! Read-only by default. The one endpoint that changes anything upstream, the card network
//! operation, exists only with the `operate` feature: the exporter is built without it, the
//! operator binary `tibiotctl` with it.

#![warn(unreachable_pub)]

pub mod calendar;
pub mod client;
pub mod endpoint;
pub mod error;
pub mod gate;
pub mod lenient;
pub mod model;
pub mod sign;

pub use client::{Client, ClientOptions, RequestObserver, RetryPolicy};
pub use endpoint::{Endpoint, Query, Subject};
pub use error::{ApiError, Outcome};
pub use gate::{Deadline, Gate};
pub use model::*;
pub use sign::{HmacSha256Signer, NoSigner, Signer};
