//! CSTA XML (ECMA-323) links: the session core and the event normalizer.

pub mod normalize;
pub mod session;

pub use session::{Output, Session, SessionConfig};
