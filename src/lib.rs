//! ctigate: an on-prem CTI gateway. PBX call-control protocols in, Login-ID keyed event streams out.
//!
//! The flow and the module map are in `docs/ARCHITECTURE.md`.
#![warn(missing_docs)]

pub mod api;
pub mod capture;
pub mod codec;
pub mod config;
pub mod connector;
pub mod demo;
pub mod gateway;
pub mod hub;
pub mod link;
pub mod model;
pub mod ops;
pub mod probe;
pub mod sim;
pub mod tls;
