//! Sans-IO wire codecs: pure functions over byte slices. Nothing here knows sockets, tokio or clocks.
//!
//! - [`framing`]: the CSTA-XML 8-byte header framer.
//! - [`xml`]: ECMA-323 (CSTA XML) decoder and encoder.

pub mod framing;
pub mod xml;
