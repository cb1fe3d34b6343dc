//! The gateway's domain core, shared by every function and by the Bedrock emulator.
//!
//! Nothing here knows about Lambda: functions translate their events into the types of this
//! crate and back. AWS services are reached through the ports in [`ports`], implemented by
//! [`adapters`] over the AWS SDK and by in-memory fakes ([`testing`], feature `testing`).

#[cfg(feature = "aws")]
pub mod adapters;
pub mod admission;
pub mod batch;
pub mod cache;
pub mod calibration;
pub mod catalog;
pub mod compat;
pub mod config;
pub mod continuation;
pub mod cost;
pub mod date;
pub mod deadline;
pub mod identity;
pub mod label;
pub mod metrics;
pub mod outputs;
pub mod ports;
pub mod quota;
pub mod request;
pub mod routing;
pub mod sampling;
pub mod service;
pub mod singleflight;
pub mod splitmix;
pub mod stream;
pub mod tokens;
pub mod usage;

#[cfg(any(test, feature = "testing"))]
pub mod testing;
