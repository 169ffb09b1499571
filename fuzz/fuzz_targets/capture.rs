//! Arbitrary bytes through `ctigate decode` in every input format (auto-detected, raw stream, hex
//! dump, pcap/pcapng with TCP reassembly), with and without the 8-byte header: nothing may panic,
//! and memory stays within the per-flow caps.
//!
//! Input layout: byte 0 picks the format (low two bits) and bare-XML mode (bit 4); the rest is the
//! capture.

#![no_main]

use ctigate::capture::{InputFormat, Options, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, capture)) = data.split_first() else {
        return;
    };
    let format = match sel & 3 {
        0 => InputFormat::Auto,
        1 => InputFormat::Raw,
        2 => InputFormat::Hex,
        _ => InputFormat::Pcap,
    };
    let opts = Options {
        format,
        no_header: sel & 0x10 != 0,
        // Small caps, so the fuzzer reaches the gap and eviction paths.
        flow_buffer: 64 << 10,
        max_flows: 64,
        ..Options::default()
    };
    let _ = decode(capture, &opts, std::io::sink());
});
