//! `codec::xml::decode` on arbitrary bytes: it must not panic, and whenever it and the quick-xml
//! reference reader both accept a document they must extract the same fields.

#![no_main]

use ctigate::codec::xml::{self, reference};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let ours = xml::decode(data).map(xml::Document::into_owned);
    let theirs = reference::decode(data);
    if let (Ok(a), Ok(b)) = (&ours, &theirs) {
        assert_eq!(
            a,
            b,
            "readers disagree on {:?}",
            String::from_utf8_lossy(data)
        );
    }
});
