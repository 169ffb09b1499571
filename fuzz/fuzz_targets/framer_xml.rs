//! A byte stream cut into arbitrary reads goes through `Deframer`, and every frame through
//! `codec::xml::decode`. Nothing may panic, and the frames must not depend on how the stream was
//! cut: the same bytes pushed in one piece give the same frames.
//!
//! Input layout: byte 0 picks the frame cap, byte 1 the number of cut lengths that follow (one
//! byte each); the rest is the stream.

#![no_main]

use ctigate::codec::framing::{Deframer, Frame, HEADER_LEN, MAX_WIRE_FRAME};
use ctigate::codec::xml;
use libfuzzer_sys::fuzz_target;

/// Runs `pieces` through a deframer with `cap`; returns the frames, decoding each.
fn run<'a>(cap: usize, pieces: impl Iterator<Item = &'a [u8]>) -> Vec<Frame> {
    let mut d = Deframer::new(cap);
    let mut frames = Vec::new();
    for piece in pieces {
        d.push(piece);
        // Every frame or error consumes at least one byte, so this many rounds always suffice;
        // running out would mean the deframer stopped making progress.
        let mut rounds = d.pending() + 2;
        loop {
            assert!(rounds > 0, "deframer makes no progress");
            rounds -= 1;
            match d.next_frame() {
                Ok(Some(f)) => {
                    let _ = xml::decode(&f.body);
                    frames.push(f);
                }
                Ok(None) => break,
                Err(_) => {}
            }
        }
        // What is left is an incomplete frame within the cap, or a short tail: an oversize frame
        // is skipped, never buffered.
        assert!(d.buffer_mut().len() < d.cap().max(HEADER_LEN + 1));
    }
    frames
}

fuzz_target!(|data: &[u8]| {
    let [cap_pick, n_cuts, rest @ ..] = data else {
        return;
    };
    let cap = match cap_pick % 4 {
        0 => MAX_WIRE_FRAME,
        1 => 64,
        2 => 1024,
        _ => HEADER_LEN + usize::from(*cap_pick),
    };
    let n = usize::from(*n_cuts % 32).min(rest.len());
    let (cuts, stream) = rest.split_at(n);
    let mut pieces = Vec::new();
    let mut at = 0;
    for &c in cuts {
        let end = (at + usize::from(c)).min(stream.len());
        pieces.push(&stream[at..end]);
        at = end;
    }
    pieces.push(&stream[at..]);
    let chunked = run(cap, pieces.into_iter());
    let whole = run(cap, std::iter::once(stream));
    assert_eq!(chunked, whole, "frames depend on how the stream was cut");
});
