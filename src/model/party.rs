//! Parties: the raw number as the PBX sent it, the dialable number inside it, E.164 when derivable,
//! and a kind.

use super::Text;
use serde::Serialize;
use std::borrow::Cow;

/// What kind of party a number designates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PartyKind {
    /// An internal extension (no longer than the PBX's extension length).
    Extension,
    /// A national number (national prefix, no country code).
    National,
    /// An international number (`+…` or international prefix).
    International,
    /// The PBX does not know the number.
    Anonymous,
    /// Presentation restricted by the caller.
    Restricted,
    /// A number that fits none of the rules (e.g. a local subscriber number).
    Unknown,
}

/// A party of a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Party {
    /// The identifier exactly as the PBX sent it (`N<+4930…>;displayNumber=…`, `sip:…`, digits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<Text>,
    /// The dialable number extracted from it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number: Option<Text>,
    /// E.164 form, when derivable from the number and the PBX's numbering plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e164: Option<Text>,
    /// Kind of party.
    pub kind: PartyKind,
}

impl Party {
    /// A party with no number.
    #[inline]
    pub fn without_number(kind: PartyKind) -> Party {
        Party {
            raw: None,
            number: None,
            e164: None,
            kind,
        }
    }

    /// Classifies `raw` with `plan`. The number and the E.164 form are inline when short and share
    /// `raw`'s buffer when long, so a party costs no allocation.
    pub fn from_raw(raw: Text, plan: &NumberingPlan) -> Party {
        let mut p = Party::without_number(PartyKind::Unknown);
        let none = bytes::Bytes::new();
        p.fill(raw.buffer().unwrap_or(&none), &raw, plan);
        p
    }

    /// Sets `slot` to the party `raw` designates (as [`Party::from_raw`]), writing its fields in
    /// place (see [`Text::set_from_frame`]). Text that lies in `frame` and is too long to be
    /// inline shares it.
    #[inline]
    pub fn set_from_frame(
        slot: &mut Option<Party>,
        frame: &bytes::Bytes,
        raw: &str,
        plan: &NumberingPlan,
    ) {
        slot.insert(Party::without_number(PartyKind::Unknown))
            .fill(frame, raw, plan);
    }

    /// Fills a party without a number with what `raw` designates.
    #[inline(always)]
    fn fill(&mut self, frame: &bytes::Bytes, raw: &str, plan: &NumberingPlan) {
        Text::set_from_frame(&mut self.raw, frame, raw);
        let number = dialable(raw);
        let (kind, e164) = plan.classify(&number);
        self.kind = kind;
        if !number.is_empty() {
            Text::set_from_frame(&mut self.number, frame, &number);
        }
        match e164 {
            E164::None => {}
            E164::Number => Text::set_from_frame(&mut self.e164, frame, &number),
            E164::Built(s) => self.e164 = Some(Text::from(s)),
        }
    }

    /// A short form for logs at info level: kind and the last two digits only.
    pub fn redacted(&self) -> String {
        match &self.number {
            Some(n) if n.len() > 2 => format!("{:?}:…{}", self.kind, &n[n.len() - 2..]),
            _ => format!("{:?}", self.kind),
        }
    }
}

/// Extracts the dialable number from a device identifier in any of the forms PBXs use:
/// `N<+4930123>;displayNumber=…` (OpenScape), `sip:4711@host;user=phone`, `tel:+4930123;phone-context=…`,
/// `4711:CM1:10.0.0.5:0` (Avaya DMCC: extension, switch name, address, instance), or plain digits
/// with separators. Keeps `+`, digits, `*` and `#`. Borrows from `raw` when the
/// number is a contiguous part of it; an identifier that is not a number gives an empty string.
pub fn dialable(raw: &str) -> Cow<'_, str> {
    // Device ids are ASCII and come trimmed from the decoder: look at bytes, and trim (Unicode
    // whitespace included) only when an end is not a printable ASCII byte.
    let printable = |c: Option<&u8>| c.is_some_and(|c| c.is_ascii_graphic());
    let b = raw.as_bytes();
    if !(printable(b.first()) && printable(b.last())) {
        return dialable_general(raw.trim());
    }
    // The usual case in one pass: after the form's prefix, a run of dial characters that ends
    // exactly where the form says the number ends.
    let (from, stops): (usize, &[u8]) = match b {
        // Plain numbers first (most device ids).
        [b'+' | b'0'..=b'9', ..] => (0, b";:"),
        [b'N', b'<', ..] => (2, b">"),
        // URI schemes are case-insensitive (RFC 3986).
        [b's' | b'S', b'i' | b'I', b'p' | b'P', b':', ..] => (4, b"@;"),
        [b's' | b'S', b'i' | b'I', b'p' | b'P', b's' | b'S', b':', ..] => (5, b"@;"),
        [b't' | b'T', b'e' | b'E', b'l' | b'L', b':', ..] => (4, b";"),
        _ => (0, b";:"),
    };
    let settled = match dial_run(b, from) {
        Some(k) => match b.get(k) {
            // `N<…` without a `>` is not the OpenScape form: the general rules apply.
            None => (from != 2).then_some(k),
            Some(c) => stops.contains(c).then_some(k),
        },
        None => None,
    };
    let Some(k) = settled else {
        return dialable_general(raw);
    };
    debug_assert!(raw.is_char_boundary(from) && raw.is_char_boundary(k) && from <= k);
    // SAFETY: `from <= k <= raw.len()` (`from` is the length of a prefix `raw` has, and
    // `dial_run` returns a position from `from` to the end), and both are char boundaries:
    // `from` follows an ASCII prefix (or is 0), and `k` is the end or an ASCII stop byte's
    // position.
    Cow::Borrowed(unsafe { raw.get_unchecked(from..k) })
}

/// Do two device identifiers name the same device? Equal, or the same dialable number in two
/// forms (`4711` and `sip:4711@pbx`). Identifiers without a number (`sip:alice@pbx`) are the same
/// only when equal: their empty numbers say nothing.
pub fn same_device(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let x = dialable(a);
    !x.is_empty() && x == dialable(b)
}

/// [`dialable`] on trimmed text, by the rules written out: for what the one pass does not
/// settle (separators, names, `N<` without `>`, numbers of 16 characters or more). Out of line,
/// so that the usual case does not save the registers this needs.
#[inline(never)]
fn dialable_general(s: &str) -> Cow<'_, str> {
    let b = s.as_bytes();
    let dial =
        |i: usize, c: u8| c.is_ascii_digit() || c == b'*' || c == b'#' || (c == b'+' && i == 0);
    /// The first position from `from` on whose byte `stop` accepts, or the end.
    #[inline(always)]
    fn find(b: &[u8], from: usize, stop: impl Fn(u8) -> bool) -> Option<usize> {
        b.get(from..)?
            .iter()
            .position(|&c| stop(c))
            .map(|k| from + k)
    }
    let end = b.len();
    // The number's range in `s`; every cut is next to an ASCII byte, so a char boundary.
    let (from, to) = match b {
        [b'N', b'<', ..] if let Some(gt) = find(b, 2, |c| c == b'>') => (2, gt),
        [b's' | b'S', b'i' | b'I', b'p' | b'P', b':', ..] => {
            (4, find(b, 4, |c| c == b'@' || c == b';').unwrap_or(end))
        }
        [b's' | b'S', b'i' | b'I', b'p' | b'P', b's' | b'S', b':', ..] => {
            (5, find(b, 5, |c| c == b'@' || c == b';').unwrap_or(end))
        }
        [b't' | b'T', b'e' | b'E', b'l' | b'L', b':', ..] => {
            (4, find(b, 4, |c| c == b';').unwrap_or(end))
        }
        _ => (0, find(b, 0, |c| c == b';' || c == b':').unwrap_or(end)),
    };
    let s = s.get(from..to).unwrap_or_default();
    if s.bytes().enumerate().all(|(i, c)| dial(i, c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    for (i, c) in s.bytes().enumerate() {
        if dial(i, c) {
            out.push(char::from(c));
        } else if !matches!(c, b' ' | b'-' | b'(' | b')' | b'/' | b'.') {
            // Not a number at all (a name, an opaque device id): keep nothing.
            return Cow::Borrowed("");
        }
    }
    Cow::Owned(out)
}

/// Where the run of dial characters (`0-9`, `*`, `#`, and `+` first) that starts at `from` ends,
/// if it ends within sixteen bytes: they are classified at once instead of byte by byte. Past the
/// end of `b` it reads zeros, which end the run.
#[inline(always)]
fn dial_run(b: &[u8], from: usize) -> Option<usize> {
    let m = non_dial_at(b, from);
    // A padded chunk always has a bit at or before the end of `b`; none: 16 dial characters
    // or more, rare enough for the general path.
    (m != 0).then(|| from + m.trailing_zeros() as usize)
}

/// [`non_dial`] of the sixteen bytes at `i`, zeros standing in for those past the end of `b`.
#[inline(always)]
fn non_dial_at(b: &[u8], i: usize) -> u32 {
    let rest = b.get(i..).unwrap_or_default();
    match rest.first_chunk::<16>() {
        Some(c) => non_dial(c),
        None => non_dial(&padded(rest)),
    }
}

/// `b` (fewer than 16 bytes) followed by zeros, copied in at most two overlapping fixed-size
/// moves (a `memcpy` call costs more for so few bytes).
#[inline(always)]
fn padded(b: &[u8]) -> [u8; 16] {
    let mut p = [0u8; 16];
    let n = b.len();
    if n >= 8 {
        p[..8].copy_from_slice(&b[..8]);
        p[n - 8..n].copy_from_slice(&b[n - 8..]);
    } else if n >= 4 {
        p[..4].copy_from_slice(&b[..4]);
        p[n - 4..n].copy_from_slice(&b[n - 4..]);
    } else if n >= 2 {
        p[..2].copy_from_slice(&b[..2]);
        p[n - 2..n].copy_from_slice(&b[n - 2..]);
    } else if let Some(&c) = b.first() {
        p[0] = c;
    }
    p
}

/// Over 16 bytes: bit `k` set when byte `k` is not a dial character of a number that starts at
/// byte 0: `0-9`, `*`, `#`, and `+` as byte 0.
#[inline(always)]
fn non_dial(c: &[u8; 16]) -> u32 {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        // SAFETY: `sse2::non_dial` only needs the SSE2 instructions, and this code is compiled
        // only for targets that have them (`target_feature = "sse2"`, on for every x86-64 target).
        unsafe { sse2::non_dial(c) }
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        portable_non_dial(c)
    }
}

/// The portable `non_dial`, byte by byte; on x86-64 it only runs in tests, which hold it equal
/// to the SSE2 one.
#[cfg_attr(
    all(target_arch = "x86_64", target_feature = "sse2", not(test)),
    allow(dead_code)
)]
fn portable_non_dial(c: &[u8; 16]) -> u32 {
    c.iter().enumerate().fold(0, |m, (k, &x)| {
        let dial = x.is_ascii_digit() || x == b'*' || x == b'#' || (x == b'+' && k == 0);
        if dial { m } else { m | 1 << k }
    })
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
mod sse2 {
    use std::arch::x86_64::{
        __m128i, _mm_and_si128, _mm_cmpeq_epi8, _mm_cvtsi32_si128, _mm_loadu_si128, _mm_min_epu8,
        _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8, _mm_sub_epi8,
    };

    #[target_feature(enable = "sse2")]
    pub(super) fn non_dial(c: &[u8; 16]) -> u32 {
        // SAFETY: `c` is 16 readable bytes, and `_mm_loadu_si128` has no alignment requirement.
        let v = unsafe { _mm_loadu_si128(c.as_ptr().cast::<__m128i>()) };
        let eq = |x: u8| _mm_cmpeq_epi8(v, _mm_set1_epi8(x as i8));
        // A digit is a byte whose distance above `0` is at most 9 (unsigned).
        let d = _mm_sub_epi8(v, _mm_set1_epi8(b'0' as i8));
        let digit = _mm_cmpeq_epi8(_mm_min_epu8(d, _mm_set1_epi8(9)), d);
        // `+` counts in byte 0 only.
        let plus = _mm_and_si128(eq(b'+'), _mm_cvtsi32_si128(0xFF));
        let dial = _mm_or_si128(_mm_or_si128(digit, plus), _mm_or_si128(eq(b'*'), eq(b'#')));
        !(_mm_movemask_epi8(dial) as u32) & 0xFFFF
    }
}

/// The E.164 form a classification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum E164 {
    /// None derivable.
    None,
    /// The number itself (it starts with `+`).
    Number,
    /// Built from the number and the plan.
    Built(String),
}

/// How a PBX's numbers are to be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberingPlan {
    /// Country calling code without `+`, e.g. `49`; needed to derive E.164 from national numbers.
    pub country_code: Option<String>,
    /// Digits dialled to reach an outside line, stripped before classification (e.g. `0`).
    pub outside_prefix: Option<String>,
    /// National trunk prefix, usually `0`.
    pub national_prefix: String,
    /// International prefix, usually `00`.
    pub international_prefix: String,
    /// Longest internal extension.
    pub extension_max_len: usize,
}

impl Default for NumberingPlan {
    fn default() -> Self {
        NumberingPlan {
            country_code: None,
            outside_prefix: None,
            national_prefix: "0".into(),
            international_prefix: "00".into(),
            extension_max_len: 6,
        }
    }
}

impl NumberingPlan {
    /// Kind and E.164 form of a dialable number.
    pub fn classify(&self, number: &str) -> (PartyKind, E164) {
        let plus = |cc: &str, rest: &str| {
            let mut e = String::with_capacity(1 + cc.len() + rest.len());
            e.push('+');
            e.push_str(cc);
            e.push_str(rest);
            E164::Built(e)
        };
        if number.is_empty() {
            return (PartyKind::Unknown, E164::None);
        }
        if number.starts_with('+') {
            return (PartyKind::International, E164::Number);
        }
        if number.len() <= self.extension_max_len {
            return (PartyKind::Extension, E164::None);
        }
        let mut n = number;
        if let Some(p) = &self.outside_prefix
            && let Some(rest) = n.strip_prefix(p.as_str())
            && rest.len() > self.extension_max_len
        {
            n = rest;
        }
        if !self.international_prefix.is_empty()
            && let Some(rest) = n.strip_prefix(self.international_prefix.as_str())
        {
            return (PartyKind::International, plus("", rest));
        }
        if !self.national_prefix.is_empty()
            && let Some(rest) = n.strip_prefix(self.national_prefix.as_str())
        {
            let e164 = match &self.country_code {
                Some(cc) => plus(cc, rest),
                None => E164::None,
            };
            return (PartyKind::National, e164);
        }
        (PartyKind::Unknown, E164::None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The straightforward reading of the rules on `str` (the first implementation), as an oracle
    /// for the byte-level one.
    fn dialable_oracle(raw: &str) -> String {
        fn strip<'a>(s: &'a str, scheme: &str) -> Option<&'a str> {
            let head = s.get(..scheme.len())?;
            head.eq_ignore_ascii_case(scheme)
                .then(|| &s[scheme.len()..])
        }
        let mut s = raw.trim();
        if let Some(rest) = s.strip_prefix('N')
            && let Some(inner) = rest.strip_prefix('<')
            && let Some(end) = inner.find('>')
        {
            s = &inner[..end];
        } else if let Some(rest) = strip(s, "sip:").or_else(|| strip(s, "sips:")) {
            s = rest.split(['@', ';']).next().unwrap_or("");
        } else if let Some(rest) = strip(s, "tel:") {
            s = rest.split(';').next().unwrap_or("");
        } else if let Some(i) = s.find([';', ':']) {
            s = &s[..i];
        }
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if c.is_ascii_digit() || c == '*' || c == '#' || (c == '+' && i == 0) {
                out.push(c);
            } else if !matches!(c, ' ' | '-' | '(' | ')' | '/' | '.') {
                return String::new();
            }
        }
        out
    }

    proptest::proptest! {
        #[test]
        fn dialable_matches_the_oracle(raw in "[ N<>;@+0-9*#a-zSIPTEL:()./\\-\u{a0}\u{e9}]{0,24}") {
            proptest::prop_assert_eq!(dialable(&raw).into_owned(), dialable_oracle(&raw));
        }
    }

    proptest::proptest! {
        /// Numbers long enough to cross the 16-byte chunks, in every form.
        #[test]
        fn dialable_matches_the_oracle_on_long_numbers(
            raw in "(N<|sip:|sips:|tel:|SIP:|Sips:|TEL:)?\\+?[0-9*#+]{0,40}[>;@ a+-]?[0-9;=a-z]{0,6}"
        ) {
            proptest::prop_assert_eq!(dialable(&raw).into_owned(), dialable_oracle(&raw));
        }
    }

    /// The SSE2 classification equals the portable one on every byte value in every lane.
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    #[test]
    fn non_dial_sse2_matches_portable() {
        for round in 0..=255u8 {
            let mut c = [0u8; 16];
            for (k, x) in c.iter_mut().enumerate() {
                *x = round.wrapping_add(k as u8 * 17);
            }
            // SAFETY: this build has SSE2 (cfg above).
            assert_eq!(
                unsafe { sse2::non_dial(&c) },
                portable_non_dial(&c),
                "{c:?}"
            );
        }
        for n in 0..16 {
            let b: Vec<u8> = (1..=n as u8).collect();
            let p = padded(&b);
            assert_eq!(&p[..n], &b[..]);
            assert!(p[n..].iter().all(|&x| x == 0));
        }
    }

    #[test]
    fn dialable_matches_the_oracle_on_edge_cases() {
        for raw in [
            "",
            " ",
            "N",
            "N<",
            "N<>",
            "N<1",
            "N<12>x",
            "N<+1>;a",
            "sip:",
            "sips:1@x",
            "sip:1;u",
            "tel:",
            "tel:+1;x",
            ";",
            "1;2",
            " 4711 ",
            "\u{a0}4711\u{a0}",
            "+",
            "++1",
            "1+",
            "*#",
            "é1",
            "N<é>",
            // Runs that end at, before and after a 16-byte chunk's end.
            "123456789012345",
            "1234567890123456",
            "12345678901234567",
            "+1234567890123456+",
            "1234567890123456+",
            "N<12345678901234>",
            "N<123456789012345>",
            "N<+12345678901234567890123456789012345>;x",
            "N<12345678901234567890",
            "sip:12345678901234567890@pbx",
            "tel:1234567890123456;x",
            "12\0",
            "2001:CM1:10.0.0.5:0",
            "4750:CMSim::0",
            ":1",
            "1:",
            "x:1",
            "1234567890123456:CM1::0",
            "1234567890123456\0",
        ] {
            assert_eq!(
                dialable(raw).as_ref(),
                dialable_oracle(raw).as_str(),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn devices_without_a_number_are_the_same_only_when_equal() {
        assert!(same_device("4711", "sip:4711@pbx"));
        assert!(same_device("N<4711>;displayNumber=4711", "4711"));
        assert!(same_device("sip:alice@pbx", "sip:alice@pbx"));
        assert!(!same_device("sip:alice@pbx", "sip:bob@pbx"));
        assert!(!same_device("Alice", "Bob"));
        assert!(!same_device("4711", "4712"));
    }

    #[test]
    fn dialable_forms() {
        assert_eq!(
            dialable("N<+15619231000>;displayNumber=9231000;noa=nk"),
            "+15619231000"
        );
        assert_eq!(dialable("N<302118840100>;noa=nk"), "302118840100");
        assert_eq!(dialable("sip:455455@ser.intern.snom.de"), "455455");
        assert_eq!(
            dialable("tel:+3222220220;phone-context=dialstring"),
            "+3222220220"
        );
        assert_eq!(dialable("+49 (30) 123-45/6"), "+4930123456");
        assert_eq!(dialable("4711"), "4711");
        assert_eq!(dialable("2001:CM1:10.0.0.5:0"), "2001");
        assert_eq!(dialable("SIP:4711@pbx"), "4711");
        assert_eq!(dialable("TEL:+4930123;phone-context=x"), "+4930123");
        assert_eq!(dialable("4750:CMSim::0"), "4750");
        assert_eq!(dialable("sip:alice@example.com"), "");
        assert_eq!(dialable("Alice"), "");
    }

    #[test]
    fn classification() {
        let plan = NumberingPlan {
            country_code: Some("49".into()),
            outside_prefix: Some("0".into()),
            ..NumberingPlan::default()
        };
        assert_eq!(plan.classify("4711"), (PartyKind::Extension, E164::None));
        assert_eq!(
            plan.classify("+4930123"),
            (PartyKind::International, E164::Number)
        );
        // Outside prefix 0, then national 030…
        assert_eq!(
            plan.classify("0030123456"),
            (PartyKind::National, E164::Built("+4930123456".into()))
        );
        assert_eq!(
            plan.classify("030123456"),
            (PartyKind::Unknown, E164::None),
            "with an outside prefix of 0, 030… is outside + local 30…"
        );
        let plain = NumberingPlan::default();
        assert_eq!(
            plain.classify("030123456"),
            (PartyKind::National, E164::None)
        );
        assert_eq!(
            plain.classify("0044207123"),
            (PartyKind::International, E164::Built("+44207123".into()))
        );
    }

    #[test]
    fn party_keeps_raw_and_redacts() {
        let p = Party::from_raw(
            Text::from("N<+4930123456>;noa=nk"),
            &NumberingPlan::default(),
        );
        assert_eq!(p.raw.as_deref(), Some("N<+4930123456>;noa=nk"));
        assert_eq!(p.number.as_deref(), Some("+4930123456"));
        assert_eq!(p.kind, PartyKind::International);
        assert_eq!(p.redacted(), "International:…56");
        assert_eq!(p.e164.as_deref(), Some("+4930123456"));
    }

    #[test]
    fn dialable_borrows_when_it_can() {
        assert!(matches!(
            dialable("N<+4930123>;noa=nk"),
            Cow::Borrowed("+4930123")
        ));
        assert!(matches!(dialable("4711"), Cow::Borrowed("4711")));
        assert!(matches!(dialable("+49 30 1"), Cow::Owned(_)));
        // A number too long to be inline shares the raw text's buffer.
        let raw = Text::from("sip:+4930123456789012345678901234567890123456@pbx;user=phone");
        let p = Party::from_raw(raw.clone(), &NumberingPlan::default());
        let n = "+4930123456789012345678901234567890123456";
        assert_eq!(p.number.as_deref(), Some(n));
        assert_eq!(p.number.as_ref().unwrap().as_ptr(), raw[4..].as_ptr());
        assert_eq!(p.e164.as_ref().unwrap().as_ptr(), raw[4..].as_ptr());
    }
}
