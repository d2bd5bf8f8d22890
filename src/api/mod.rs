//! Everything that speaks TIBIOT: the typed [`Client`] (one method per endpoint, retries inside a
//! caller-given deadline, a response-size cap), the account's [`Gate`] every attempt passes
//! through, request [`sign`]ing, the lenient response
//! [`model`]s and the one [`ApiError`] type that tells the failure classes apart.

pub mod client;
pub mod error;
pub mod gate;
pub mod lenient;
pub mod model;
pub mod sign;

pub use client::{Client, ClientOptions, Endpoint, RequestObserver, RetryPolicy};
pub use error::{ApiError, Outcome};
pub use gate::{Deadline, Gate};
pub use model::*;
pub use sign::{HmacSha256Signer, NoSigner, Signer};
