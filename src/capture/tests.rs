//! Tests across the capture modules.
