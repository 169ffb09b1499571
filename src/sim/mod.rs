//! PBX simulators for the demo, the integration tests, the load generator and the benches.

pub mod csta_xml;
