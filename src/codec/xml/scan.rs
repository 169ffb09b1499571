//! A minimal, borrowing XML tokenizer for CSTA documents.
//!
//! It yields start/end tags, text and CDATA as slices of the input, skips the declaration, processing
//! instructions and comments, and rejects DOCTYPE (no DTDs, so no entity expansion attacks). It checks
//! what a CSTA decoder relies on (names are well formed, quotes balance, references are well formed;
//! the decoder checks that tags close in order) and nothing more; names are matched by local part by
//! the caller.
//!
//! The hot paths are written for short tags and values: names and text are scanned eight bytes at a
//! time (SWAR) instead of with `memchr`, whose set-up costs more than a 12-byte name; an end tag is
//! compared with the name the caller expects instead of being scanned; and a text token says
//! whether it holds a reference or a carriage return, so plain values are never looked at twice.

use super::XmlError;
use std::borrow::Cow;

/// One token of the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Token<'a> {
    /// `<name attrs>` or `<name attrs/>` (`empty`). `local` is `name` without its prefix.
    Start {
        name: &'a str,
        local: &'a str,
        attrs: &'a str,
        empty: bool,
    },
    /// `</name>`.
    End { name: &'a str },
    /// Character data as written, references unresolved. `plain`: it holds no `&` and no `\r`, so
    /// it is its own value.
    Text { raw: &'a str, plain: bool },
    /// The content of `<![CDATA[…]]>`, line ends not yet normalized.
    CData(&'a str),
}

/// Byte classes for names: 0 = part of a name, 1 = ends a name (whitespace, `/`, `>`), 2 = never
/// allowed in a name (`<`, `=`, quotes, `&`).
const NAME_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b' ' as usize] = 1;
    t[b'\t' as usize] = 1;
    t[b'\r' as usize] = 1;
    t[b'\n' as usize] = 1;
    t[b'/' as usize] = 1;
    t[b'>' as usize] = 1;
    t[b'<' as usize] = 2;
    t[b'=' as usize] = 2;
    t[b'"' as usize] = 2;
    t[b'\'' as usize] = 2;
    t[b'&' as usize] = 2;
    t
};

/// `N` bytes at `i`, if there are `N`. Written as `i <= len - N` so that in a loop the test is one
/// compare with a hoisted limit (`b.get(i..i + N)` also tests for overflow, five more
/// instructions on every scan step).
#[inline(always)]
fn array_at<const N: usize>(b: &[u8], i: usize) -> Option<&[u8; N]> {
    if b.len() >= N && i <= b.len() - N {
        // SAFETY: `i + N <= b.len()` (no overflow: `i <= b.len() - N`), so the `N` bytes at `i`
        // are inside `b`, and `[u8; N]` has the alignment of `u8`.
        Some(unsafe { &*b.as_ptr().add(i).cast::<[u8; N]>() })
    } else {
        None
    }
}

/// Eight bytes at `i`, if there are eight (one bounds check).
#[inline(always)]
pub(crate) fn word(b: &[u8], i: usize) -> Option<u64> {
    array_at::<8>(b, i).map(|c| u64::from_le_bytes(*c))
}

/// Byte-slice equality, eight bytes at a time (tag names are short; this beats a `bcmp` call).
#[inline]
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        // A short loop beats a `memcmp` call for names like `callID`.
        return a.iter().zip(b).all(|(x, y)| x == y);
    }
    let mut i = 0;
    while i + 8 <= n {
        if word(a, i) != word(b, i) {
            return false;
        }
        i += 8;
    }
    // The last, overlapping word covers the tail.
    word(a, n - 8) == word(b, n - 8)
}

/// Whether the `len` bytes at `a` and at `c` of `b` are equal. Names of up to 16 bytes are
/// compared as one masked 16-byte vector when sixteen bytes can be loaded at both places (there is
/// nearly always more document after a name), which beats word loops or a `memcmp` call.
#[inline(always)]
pub(crate) fn same_at(b: &[u8], a: usize, c: usize, len: usize) -> bool {
    if len <= 16
        && let (Some(x), Some(y)) = (chunk(b, a), chunk(b, c))
    {
        // `len` ≤ 16, so the shift is in range.
        let want = (1u32 << len) - 1;
        return eq_mask(x, y) & want == want;
    }
    if len <= 32
        && let (Some(x0), Some(y0)) = (chunk(b, a), chunk(b, c))
        && let (Some(x1), Some(y1)) = (chunk(b, a + len - 16), chunk(b, c + len - 16))
    {
        // Longer names (`extendedServicesPermitted`): the first sixteen bytes and the last
        // sixteen, overlapping.
        return eq_mask(x0, y0) & eq_mask(x1, y1) == 0xFFFF;
    }
    match (b.get(a..a + len), b.get(c..c + len)) {
        (Some(x), Some(y)) => same(x, y),
        _ => false,
    }
}

/// Masks over 16 bytes: bit `k` describes byte `k`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct TextMasks {
    /// `<`.
    pub(crate) lt: u32,
    /// `&` or `\r`: text holding one needs unescaping or line-end normalization.
    pub(crate) special: u32,
}

/// Over 16 bytes of a tag name: bit `k` set when byte `k` is below 0x40. Letters, `_` and
/// non-ASCII bytes (almost all of a name) are at or above 0x40; everything that ends a name or may
/// not be in one (whitespace, `/`, `>`, `<`, `=`, quotes, `&`) is below, as are the few name
/// characters that need a look (`:`, digits, `-`, `.`).
pub(crate) type NameMask = u32;

/// SSE2 versions (the x86-64 baseline): one compare per byte class for all 16 bytes.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
mod sse2 {
    use super::{NameMask, TextMasks};
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8, _mm_setzero_si128,
    };

    #[target_feature(enable = "sse2")]
    fn load(c: &[u8; 16]) -> __m128i {
        // One unaligned load (building the vector from two words costs two more instructions).
        // SAFETY: `c` is 16 readable bytes, and `_mm_loadu_si128` has no alignment requirement.
        unsafe { _mm_loadu_si128(c.as_ptr().cast::<__m128i>()) }
    }

    #[target_feature(enable = "sse2")]
    fn bits(v: __m128i) -> u32 {
        u32::from(_mm_movemask_epi8(v) as u16)
    }

    #[target_feature(enable = "sse2")]
    fn eq(v: __m128i, c: u8) -> __m128i {
        _mm_cmpeq_epi8(v, _mm_set1_epi8(c as i8))
    }

    #[target_feature(enable = "sse2")]
    pub(super) fn text(c: &[u8; 16]) -> TextMasks {
        let v = load(c);
        TextMasks {
            lt: bits(eq(v, b'<')),
            special: bits(_mm_or_si128(eq(v, b'&'), eq(v, b'\r'))),
        }
    }

    #[target_feature(enable = "sse2")]
    pub(super) fn same(a: &[u8; 16], b: &[u8; 16]) -> u32 {
        bits(_mm_cmpeq_epi8(load(a), load(b)))
    }

    #[target_feature(enable = "sse2")]
    pub(super) fn any_of<const N: usize>(c: &[u8; 16], set: [u8; N]) -> u32 {
        let v = load(c);
        let mut m = _mm_setzero_si128();
        for x in set {
            m = _mm_or_si128(m, eq(v, x));
        }
        bits(m)
    }

    #[target_feature(enable = "sse2")]
    pub(super) fn name(c: &[u8; 16]) -> NameMask {
        let v = load(c);
        // max(v, 0x3F) == 0x3F exactly when v < 0x40 (unsigned).
        let top = _mm_set1_epi8(0x3F);
        bits(_mm_cmpeq_epi8(_mm_max_epu8(v, top), top))
    }
}

/// Portable versions, eight bytes at a time, with exact per-byte tests. On x86-64 they only run
/// in tests, which hold them equal to the SSE2 versions.
#[cfg_attr(
    all(target_arch = "x86_64", target_feature = "sse2", not(test)),
    allow(dead_code)
)]
mod swar {
    use super::{NameMask, TextMasks};

    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;

    fn words(c: &[u8; 16]) -> [u64; 2] {
        let (lo, hi) = c.split_at(8);
        let word = |w: &[u8]| {
            let mut a = [0u8; 8];
            a.copy_from_slice(w);
            u64::from_le_bytes(a)
        };
        [word(lo), word(hi)]
    }

    /// High bit of each zero byte of `x`, exactly (no borrow crosses bytes).
    fn zero(x: u64) -> u64 {
        !(((x & !HI).wrapping_add(!HI)) | x | !HI)
    }

    fn eq(x: u64, c: u8) -> u64 {
        zero(x ^ (LO * u64::from(c)))
    }

    /// High bit of each byte below `n` (`n` ≤ 0x80): `(x | 0x80) - n` keeps its high bit exactly
    /// for the others, and no borrow crosses bytes because each starts at 0x80 or more.
    fn below(x: u64, n: u8) -> u64 {
        !((x | HI).wrapping_sub(LO * u64::from(n))) & HI & !x
    }

    /// The high bits of the sixteen bytes, gathered into the low sixteen bits.
    fn gather(m: [u64; 2]) -> u32 {
        let g = |x: u64| ((x >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u32;
        g(m[0]) | (g(m[1]) << 8)
    }

    pub(super) fn text(c: &[u8; 16]) -> TextMasks {
        let w = words(c);
        TextMasks {
            lt: gather(w.map(|x| eq(x, b'<'))),
            special: gather(w.map(|x| eq(x, b'&') | eq(x, b'\r'))),
        }
    }

    pub(super) fn name(c: &[u8; 16]) -> NameMask {
        gather(words(c).map(|x| below(x, 0x40)))
    }

    pub(super) fn same(a: &[u8; 16], b: &[u8; 16]) -> u32 {
        let (x, y) = (words(a), words(b));
        gather([zero(x[0] ^ y[0]), zero(x[1] ^ y[1])])
    }

    pub(super) fn any_of<const N: usize>(c: &[u8; 16], set: [u8; N]) -> u32 {
        gather(words(c).map(|x| set.iter().fold(0, |m, &s| m | eq(x, s))))
    }
}

/// The text masks of 16 bytes, with the fastest implementation this build has.
#[inline(always)]
fn text_masks(c: &[u8; 16]) -> TextMasks {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        // SAFETY: `sse2::text` only needs the SSE2 instructions, and this code is compiled only
        // for targets that have them (`target_feature = "sse2"`, on for every x86-64 target).
        unsafe { sse2::text(c) }
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        swar::text(c)
    }
}

/// Whether every byte of `b` is ASCII: an OR of all its 8-byte words, four at a time (which the
/// compiler turns into vector ORs), then one test of the high bits.
pub(crate) fn is_ascii(b: &[u8]) -> bool {
    const HI: u64 = 0x8080_8080_8080_8080;
    let word = |w: &[u8]| {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        u64::from_le_bytes(a)
    };
    let blocks = b.chunks_exact(32);
    let tail = blocks.remainder();
    let mut acc = [0u64; 4];
    for block in blocks {
        for (a, w) in acc.iter_mut().zip(block.chunks_exact(8)) {
            *a |= word(w);
        }
    }
    (acc[0] | acc[1] | acc[2] | acc[3]) & HI == 0 && tail.is_ascii()
}

/// The name mask of 16 bytes, with the fastest implementation this build has.
#[inline(always)]
fn name_mask(c: &[u8; 16]) -> NameMask {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        // SAFETY: as in `text_masks`.
        unsafe { sse2::name(c) }
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        swar::name(c)
    }
}

/// Over two times 16 bytes: bit `k` set when byte `k` of `a` equals byte `k` of `b`.
#[inline(always)]
fn eq_mask(a: &[u8; 16], b: &[u8; 16]) -> u32 {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        // SAFETY: as in `text_masks`.
        unsafe { sse2::same(a, b) }
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        swar::same(a, b)
    }
}

/// Over 16 bytes: bit `k` set when byte `k` is one of `set`.
#[inline(always)]
fn any_of<const N: usize>(c: &[u8; 16], set: [u8; N]) -> u32 {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        // SAFETY: as in `text_masks`.
        unsafe { sse2::any_of(c, set) }
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        swar::any_of(c, set)
    }
}

/// The first position at or after `i` that holds one of `set`. The distances scanned in a tag
/// are short, so sixteen bytes at a time inline beats `memchr`'s set-up.
#[inline(always)]
pub(crate) fn find_any<const N: usize>(b: &[u8], mut i: usize, set: [u8; N]) -> Option<usize> {
    while let Some(c) = chunk(b, i) {
        let m = any_of(c, set);
        if m != 0 {
            return Some(i + m.trailing_zeros() as usize);
        }
        i += 16;
    }
    // Fewer than 16 bytes left.
    while let Some(c) = b.get(i) {
        if set.contains(c) {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// The end of an attribute value that starts at `i` and is quoted with `quote`: the position of
/// the first `quote` or `<` (which may not appear in a value), and whether the value before it
/// is plain: it holds no `&`, tab, line feed or carriage return, so it needs no normalization.
#[inline]
pub(crate) fn attr_value_end(b: &[u8], mut i: usize, quote: u8) -> Option<(usize, bool)> {
    const SPECIAL: [u8; 4] = [b'&', b'\t', b'\n', b'\r'];
    let mut plain = true;
    while let Some(c) = chunk(b, i) {
        let stop = any_of(c, [quote, b'<']);
        let special = any_of(c, SPECIAL);
        if stop != 0 {
            let k = stop.trailing_zeros();
            // Only the specials before the stop count (`k` < 16, so the shift is in range).
            plain &= special & ((1u32 << k) - 1) == 0;
            return Some((i + k as usize, plain));
        }
        plain &= special == 0;
        i += 16;
    }
    while let Some(&c) = b.get(i) {
        if c == quote || c == b'<' {
            return Some((i, plain));
        }
        plain &= !SPECIAL.contains(&c);
        i += 1;
    }
    None
}

/// Sixteen bytes at `i`, if there are sixteen.
#[inline(always)]
fn chunk(b: &[u8], i: usize) -> Option<&[u8; 16]> {
    array_at::<16>(b, i)
}

/// Text from `i` up to the next `<` (or the end of `b`), and whether it is plain: it holds no `&`
/// and no `\r`, so it is its own value.
#[inline(always)]
pub(crate) fn text_run(b: &[u8], mut i: usize) -> (usize, bool) {
    // Compact documents put tags back to back: no text at all.
    if b.get(i) == Some(&b'<') {
        return (i, true);
    }
    let mut plain = true;
    while let Some(c) = chunk(b, i) {
        let m = text_masks(c);
        if m.lt != 0 {
            let k = m.lt.trailing_zeros();
            // A byte is never both `<` and `&`, so "no `&` below k" is tz(special) > k.
            plain &= m.special.trailing_zeros() > k;
            return (i + k as usize, plain);
        }
        plain &= m.special == 0;
        i += 16;
    }
    // Fewer than 16 bytes left.
    while let Some(&c) = b.get(i) {
        match c {
            b'<' => break,
            b'&' | b'\r' => plain = false,
            _ => {}
        }
        i += 1;
    }
    (i, plain)
}

/// Scans a name starting at `from`; returns its end and where its local part starts (after the
/// first colon, if any). The first byte must be a letter, `_`, `:` or non-ASCII; the name must end
/// at whitespace, `/` or `>` and hold none of `<`, `=`, quotes or `&`.
#[inline(always)]
pub(crate) fn name_end(b: &[u8], from: usize) -> Result<(usize, usize), XmlError> {
    match b.get(from) {
        Some(c) if c.is_ascii_alphabetic() || *c == b'_' || *c == b':' || *c >= 0x80 => {}
        Some(_) => return Err(bad_name(from)),
        None => return Err(XmlError::Truncated),
    }
    let mut i = from;
    let mut local = from;
    while let Some(c) = chunk(b, i) {
        // Look only at the bytes below 0x40; in most names the first one ends it.
        let mut m = name_mask(c);
        while m != 0 {
            let k = m.trailing_zeros() as usize;
            let c = b[i + k];
            match NAME_CLASS[usize::from(c)] {
                0 => {
                    // The prefix ends at the first colon (a name with more is not
                    // namespace-well-formed; this is how quick-xml reads it too).
                    if c == b':' && local == from {
                        local = i + k + 1;
                    }
                }
                1 => return Ok((i + k, local)),
                _ => return Err(bad_name(i + k)),
            }
            m &= m - 1;
        }
        i += 16;
    }
    // Fewer than 16 bytes left.
    while let Some(&c) = b.get(i) {
        match NAME_CLASS[usize::from(c)] {
            0 => {
                if c == b':' && local == from {
                    local = i + 1;
                }
                i += 1;
            }
            1 => return Ok((i, local)),
            _ => return Err(bad_name(i)),
        }
    }
    Err(XmlError::Truncated)
}

#[cold]
fn bad_name(at: usize) -> XmlError {
    XmlError::Syntax {
        at,
        what: "invalid element name",
    }
}

/// The `>` that ends a tag whose attributes start at `i`. A `>` inside a quoted value does not end
/// the tag.
pub(crate) fn attrs_end(b: &[u8], mut i: usize) -> Result<usize, XmlError> {
    loop {
        i = find_any(b, i, [b'>', b'"', b'\'']).ok_or(XmlError::Truncated)?;
        match b[i] {
            b'>' => return Ok(i),
            q => i = find_any(b, i + 1, [q]).ok_or(XmlError::Truncated)? + 1,
        }
    }
}

/// After the name of an end tag that ends at `i`: optional whitespace, then `>`. Returns the
/// position after the `>`.
pub(crate) fn end_tag_close(b: &[u8], mut i: usize) -> Result<usize, XmlError> {
    while let Some(&c) = b.get(i) {
        match c {
            b'>' => return Ok(i + 1),
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            _ => {
                return Err(XmlError::Syntax {
                    at: i,
                    what: "malformed end tag",
                });
            }
        }
    }
    Err(XmlError::Truncated)
}

/// What starts with `<!` or `<?` at `i` inside or around the root.
pub(crate) enum Markup {
    /// A comment, declaration or processing instruction, ending before the position given.
    Ignored(usize),
    /// `<![CDATA[…]]>`: the content's range and the position after the section.
    CData(usize, usize, usize),
}

/// Reads the comment, PI or CDATA section at `i` (where `b[i] == b'<'` and `b[i + 1]` is `!` or
/// `?`). DOCTYPE and other declarations are refused.
pub(crate) fn markup(b: &[u8], i: usize) -> Result<Markup, XmlError> {
    if b.get(i + 1) == Some(&b'?') {
        return pi_end(b, i + 2).map(Markup::Ignored);
    }
    let rest = &b[i + 1..];
    if rest.starts_with(b"!--") {
        let end = find_seq(b, b"-->", i + 4)?;
        Ok(Markup::Ignored(end + 3))
    } else if rest.starts_with(b"![CDATA[") {
        let start = i + 9;
        let end = find_seq(b, b"]]>", start)?;
        Ok(Markup::CData(start, end, end + 3))
    } else if rest.len() >= 8 && rest[1..8].eq_ignore_ascii_case(b"DOCTYPE") {
        Err(XmlError::Doctype)
    } else if b"![CDATA[".starts_with(rest) || b"!--".starts_with(rest) {
        Err(XmlError::Truncated)
    } else {
        Err(XmlError::Syntax {
            at: i,
            what: "unknown markup declaration",
        })
    }
}

/// The position after the `?>` that ends a declaration or processing instruction.
fn pi_end(b: &[u8], mut i: usize) -> Result<usize, XmlError> {
    loop {
        i = find_any(b, i, [b'?']).ok_or(XmlError::Truncated)? + 1;
        match b.get(i) {
            Some(b'>') => return Ok(i + 1),
            Some(_) => {}
            None => return Err(XmlError::Truncated),
        }
    }
}

fn find_seq(b: &[u8], needle: &[u8], from: usize) -> Result<usize, XmlError> {
    let hay = b.get(from..).ok_or(XmlError::Truncated)?;
    memchr::memmem::find(hay, needle)
        .map(|i| from + i)
        .ok_or(XmlError::Truncated)
}

/// Tokenizer over a whole document: the prolog and epilog, and tests. The decoder walks the
/// root's content with the functions above directly.
pub(crate) struct Scanner<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    pub(crate) fn new(s: &'a str) -> Self {
        Scanner { s, pos: 0 }
    }

    /// Byte offset of the cursor.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// The whole document.
    pub(crate) fn input(&self) -> &'a str {
        self.s
    }

    /// Moves the cursor (after the decoder walked the root's content).
    pub(crate) fn set_pos(&mut self, pos: usize) {
        self.pos = pos;
    }

    /// The next token, or `None` at the end of input.
    pub(crate) fn next_token(&mut self) -> Result<Option<Token<'a>>, XmlError> {
        let b = self.s.as_bytes();
        loop {
            let Some(&c) = b.get(self.pos) else {
                return Ok(None);
            };
            if c != b'<' {
                let start = self.pos;
                let (end, plain) = text_run(b, start);
                self.pos = end;
                return Ok(Some(Token::Text {
                    raw: self.slice(start, end),
                    plain,
                }));
            }
            match b.get(self.pos + 1) {
                Some(b'/') => {
                    let start = self.pos + 2;
                    let (end, _) = name_end(b, start)?;
                    self.pos = end_tag_close(b, end)?;
                    return Ok(Some(Token::End {
                        name: self.slice(start, end),
                    }));
                }
                Some(b'!' | b'?') => match markup(b, self.pos)? {
                    Markup::Ignored(next) => self.pos = next,
                    Markup::CData(start, end, next) => {
                        self.pos = next;
                        return Ok(Some(Token::CData(self.slice(start, end))));
                    }
                },
                Some(_) => {
                    let name_start = self.pos + 1;
                    let (mut i, local) = name_end(b, name_start)?;
                    let attrs_start = i;
                    if b[i] == b'/' && b.get(i + 1) != Some(&b'>') {
                        // A `/` that does not close the tag is not part of any valid tag.
                        return Err(XmlError::Syntax {
                            at: i,
                            what: "malformed start tag",
                        });
                    }
                    if b[i] != b'>' {
                        i = attrs_end(b, i)?;
                    }
                    let empty = i > attrs_start && b[i - 1] == b'/';
                    let attrs_end = if empty { i - 1 } else { i };
                    self.pos = i + 1;
                    return Ok(Some(Token::Start {
                        name: self.slice(name_start, attrs_start),
                        local: self.slice(local, attrs_start),
                        attrs: self.slice(attrs_start, attrs_end),
                        empty,
                    }));
                }
                None => return Err(XmlError::Truncated),
            }
        }
    }

    /// `s[a..b]`; the scanner only cuts next to ASCII delimiters, so this never falls back.
    fn slice(&self, a: usize, b: usize) -> &'a str {
        self.s.get(a..b).unwrap_or_default()
    }
}

/// True for the four XML whitespace bytes (and nothing else: U+00A0 is content).
#[inline(always)]
pub(crate) fn is_xml_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// `s` without leading and trailing XML whitespace.
#[inline]
pub(crate) fn trim_xml(s: &str) -> &str {
    let b = s.as_bytes();
    let (mut i, mut j) = (0, b.len());
    while i < j && is_xml_space(b[i]) {
        i += 1;
    }
    while j > i && is_xml_space(b[j - 1]) {
        j -= 1;
    }
    // Both ends sit next to ASCII bytes (or at the ends), so they are char boundaries.
    s.get(i..j).unwrap_or(s)
}

/// True if `s` is only XML whitespace.
#[inline]
pub(crate) fn all_space(s: &str) -> bool {
    s.bytes().all(is_xml_space)
}

/// Resolves entity and character references and normalizes line ends (`\r\n` and a lone `\r`
/// become `\n`, as an XML processor must). Borrows when there is nothing to do, which is the
/// common case.
#[inline]
pub(crate) fn unescape(raw: &str) -> Result<Cow<'_, str>, XmlError> {
    // Values are short: an inline 16-byte search beats `memchr`'s set-up.
    match find_any(raw.as_bytes(), 0, [b'&', b'\r']) {
        None => Ok(Cow::Borrowed(raw)),
        Some(first) => unescape_from(raw, first).map(Cow::Owned),
    }
}

/// A little-endian word of up to eight bytes, for comparing references as integers.
const fn le(s: &[u8]) -> u64 {
    let mut w = 0;
    let mut k = 0;
    while k < s.len() {
        w |= (s[k] as u64) << (8 * k);
        k += 1;
    }
    w
}

/// Copies `n` < 16 bytes with at most two overlapping fixed-size moves (a `memcpy` call costs
/// more than the copy for so few bytes).
///
/// # Safety
/// `src` must be readable and `dst` writable for `n` bytes, and the two ranges must not overlap.
#[inline(always)]
unsafe fn copy_short(src: *const u8, dst: *mut u8, n: usize) {
    debug_assert!(n < 16);
    // SAFETY: every access is inside the first `n` bytes of `src` or `dst` (each pair covers
    // `0..w` and `n - w..n` with `w <= n`), which the caller vouches for; unaligned accesses
    // are used throughout.
    unsafe {
        if n >= 8 {
            let (x, y) = (
                src.cast::<u64>().read_unaligned(),
                src.add(n - 8).cast::<u64>().read_unaligned(),
            );
            dst.cast::<u64>().write_unaligned(x);
            dst.add(n - 8).cast::<u64>().write_unaligned(y);
        } else if n >= 4 {
            let (x, y) = (
                src.cast::<u32>().read_unaligned(),
                src.add(n - 4).cast::<u32>().read_unaligned(),
            );
            dst.cast::<u32>().write_unaligned(x);
            dst.add(n - 4).cast::<u32>().write_unaligned(y);
        } else if n >= 2 {
            let (x, y) = (
                src.cast::<u16>().read_unaligned(),
                src.add(n - 2).cast::<u16>().read_unaligned(),
            );
            dst.cast::<u16>().write_unaligned(x);
            dst.add(n - 2).cast::<u16>().write_unaligned(y);
        } else if n == 1 {
            *dst = *src;
        }
    }
}

#[cold]
fn unescape_from(raw: &str, first: usize) -> Result<String, XmlError> {
    const SPECIAL: [u8; 2] = [b'&', b'\r'];
    let b = raw.as_bytes();
    let len = b.len();
    // The last 16 bytes of `raw` (all of it, right-aligned, when shorter), then eight zeros:
    // byte `p` of the tail is `last[p + 16 - len]`, and chunks and words of the tail are read
    // from here instead of byte by byte (a zero is never a special or part of a reference).
    let mut last = [0u8; 24];
    match chunk(b, len.wrapping_sub(16)) {
        Some(c) => last[..16].copy_from_slice(c),
        // SAFETY: `len < 16` here, so `b` is readable for `len` bytes and `last` writable for
        // them at `16 - len`; a local array and a borrowed `str` do not overlap.
        None => unsafe { copy_short(b.as_ptr(), last.as_mut_ptr().add(16 - len), len) },
    }
    let tail_specials = any_of(array_at::<16>(&last, 0).unwrap_or(&[0; 16]), SPECIAL);
    // The result is never longer than `raw` (a reference is at least four bytes and stands for
    // at most four, a line end shrinks or stays), so `raw.len()` bytes of capacity hold it, and
    // as long as `o <= i` (output and input positions) a write of `raw`'s bytes from `i` at `o`
    // stays inside the capacity. Runs are copied sixteen bytes at a time whole, the bytes after
    // a special being overwritten by what follows.
    let mut out = Vec::<u8>::with_capacity(len);
    let dst = out.as_mut_ptr();
    let (mut i, mut o) = (0, 0);
    // Whole chunks before the first special need no scan.
    while i + 16 <= first
        && let Some(c) = chunk(b, i)
    {
        // SAFETY: `o == i` and `i + 16 <= len`, the capacity.
        unsafe { dst.add(o).cast::<[u8; 16]>().write_unaligned(*c) };
        i += 16;
        o += 16;
    }
    loop {
        // Copy up to the next special; `k`: its distance from `i`.
        let k = if let Some(c) = chunk(b, i) {
            // SAFETY: `o + 16 <= i + 16 <= len`, the capacity.
            unsafe { dst.add(o).cast::<[u8; 16]>().write_unaligned(*c) };
            let m = any_of(c, SPECIAL);
            if m == 0 {
                i += 16;
                o += 16;
                continue;
            }
            m.trailing_zeros() as usize
        } else {
            // Fewer than 16 bytes left: copy them all, and look for a special in `last`.
            let rem = len - i;
            // SAFETY: `b` is readable for `rem` bytes at `i`, and `o + rem <= i + rem = len`,
            // the capacity; `out` is a new allocation, so they do not overlap.
            unsafe { copy_short(b.as_ptr().add(i), dst.add(o), rem) };
            // `rem <= 16`: the shift is in range (`rem == 0` gives no bits).
            let m = tail_specials >> (16 - rem);
            if m == 0 {
                o += rem;
                break;
            }
            m.trailing_zeros() as usize
        };
        i += k;
        o += k;
        // `b[i]` is `&` or `\r`, and `o <= i < len`.
        if b.get(i) == Some(&b'\r') {
            // SAFETY: `o < len`, the capacity.
            unsafe { dst.add(o).write(b'\n') };
            o += 1;
            i += if b.get(i + 1) == Some(&b'\n') { 2 } else { 1 };
            continue;
        }
        // The predefined entities (nearly all references in CSTA: OSV's `N&lt;…&gt;`),
        // recognised as integers; near the end the word comes from `last` (zero-padded).
        let w = match word(b, i) {
            Some(w) => w,
            // `i + 8 > len`, so the offset is 9..=15 and its eight bytes are inside `last`.
            None => array_at::<8>(&last, i + 16 - len).map_or(0, |w| u64::from_le_bytes(*w)),
        };
        const M4: u64 = 0xFFFF_FFFF;
        const M5: u64 = 0xFF_FFFF_FFFF;
        const M6: u64 = 0xFFFF_FFFF_FFFF;
        let predefined = if w & M4 == le(b"&lt;") {
            Some((b'<', 4))
        } else if w & M4 == le(b"&gt;") {
            Some((b'>', 4))
        } else if w & M5 == le(b"&amp;") {
            Some((b'&', 5))
        } else if w & M6 == le(b"&quot;") {
            Some((b'"', 6))
        } else if w & M6 == le(b"&apos;") {
            Some((b'\'', 6))
        } else {
            None
        };
        if let Some((ch, n)) = predefined {
            // SAFETY: `o < len`, the capacity.
            unsafe { dst.add(o).write(ch) };
            o += 1;
            i += n;
            continue;
        }
        // A character reference is at most 12 bytes before its `;`: look only there.
        let window = b.get(i..len.min(i + 13)).unwrap_or_default();
        let Some(semi) = window.iter().position(|&c| c == b';') else {
            return Err(XmlError::BadReference(truncate(&raw[i..])));
        };
        let ch = char_ref(&raw[i + 1..i + semi])
            .ok_or_else(|| XmlError::BadReference(truncate(&raw[i..])))?;
        let mut enc = [0u8; 4];
        ch.encode_utf8(&mut enc);
        // SAFETY: `char_ref` accepted `&#` and at least one digit before the `;`, so the
        // reference is at least four bytes and `o + 4 <= i + semi + 1 <= len`, the capacity.
        unsafe { dst.add(o).cast::<[u8; 4]>().write_unaligned(enc) };
        o += ch.len_utf8();
        i += semi + 1;
    }
    // SAFETY: the capacity is `len` and `o <= len`; `out[..o]` is initialized: every step wrote
    // its part at `o` before advancing `o` past it (a whole chunk's bytes beyond the part are
    // overwritten by the next step or lie beyond the final length).
    unsafe { out.set_len(o) };
    // SAFETY: `out` is `raw` (valid UTF-8) with some ASCII-delimited pieces replaced: every cut
    // is at an ASCII byte (`&`, `;`, `\r`) or is the end of one copy that the next copy
    // continues from the same byte, so runs are copied whole, and what replaces a piece is an
    // ASCII byte or a whole encoded `char`.
    Ok(unsafe { String::from_utf8_unchecked(out) })
}

/// Line-end normalization for CDATA (which has no references).
#[inline]
pub(crate) fn normalize_eol(raw: &str) -> Cow<'_, str> {
    if memchr::memchr(b'\r', raw.as_bytes()).is_none() {
        return Cow::Borrowed(raw);
    }
    Cow::Owned(raw.replace("\r\n", "\n").replace('\r', "\n"))
}

fn char_ref(ent: &str) -> Option<char> {
    let n = ent.strip_prefix('#')?;
    let v = match n.strip_prefix('x') {
        Some(hex) if !hex.is_empty() && hex.bytes().all(|c| c.is_ascii_hexdigit()) => {
            u32::from_str_radix(hex, 16).ok()?
        }
        None if !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()) => n.parse::<u32>().ok()?,
        _ => return None,
    };
    // XML forbids NUL and most C0 controls even as references.
    match char::from_u32(v)? {
        '\0' => None,
        c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => None,
        c => Some(c),
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(16).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(s: &str) -> Result<Vec<Token<'_>>, XmlError> {
        let mut sc = Scanner::new(s);
        let mut v = vec![];
        while let Some(t) = sc.next_token()? {
            v.push(t);
        }
        Ok(v)
    }

    #[test]
    fn tokenizes_tags_text_and_cdata() {
        let t = tokens(
            r#"<?xml version="1.0"?><!-- c --><p:a x="1>2" y='q'><b/>hi&amp;<![CDATA[<raw>]]></p:a >"#,
        )
        .unwrap();
        assert_eq!(
            t,
            vec![
                Token::Start {
                    name: "p:a",
                    local: "a",
                    attrs: r#" x="1>2" y='q'"#,
                    empty: false
                },
                Token::Start {
                    name: "b",
                    local: "b",
                    attrs: "",
                    empty: true
                },
                Token::Text {
                    raw: "hi&amp;",
                    plain: false
                },
                Token::CData("<raw>"),
                Token::End { name: "p:a" },
            ]
        );
    }

    #[test]
    fn names_and_text_flags() {
        let doc = "<averyveryverylongname:withalocalpart>some text that is long enough to span words</averyveryverylongname:withalocalpart>";
        let mut sc = Scanner::new(doc);
        let Some(Token::Start { name, local, .. }) = sc.next_token().unwrap() else {
            panic!()
        };
        assert_eq!(local, "withalocalpart");
        assert_eq!(
            sc.next_token().unwrap(),
            Some(Token::Text {
                raw: "some text that is long enough to span words",
                plain: true
            })
        );
        assert_eq!(sc.next_token().unwrap(), Some(Token::End { name }));
        // A `&` after the `<` in the same word does not mark the text.
        let mut sc = Scanner::new("abc<x>&amp;</x>");
        assert_eq!(
            sc.next_token().unwrap(),
            Some(Token::Text {
                raw: "abc",
                plain: true
            })
        );
        for (doc, plain) in [
            ("0123456789abcdef\r<", false),
            ("0123456&<", false),
            ("01234567&<", false),
            ("x\r", false),
            ("x", true),
        ] {
            let mut sc = Scanner::new(doc);
            let Some(Token::Text { plain: p, .. }) = sc.next_token().unwrap() else {
                panic!()
            };
            assert_eq!(p, plain, "{doc:?}");
        }
    }

    /// The SWAR masks equal the SSE2 ones on every byte value in every lane.
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    #[test]
    fn swar_masks_match_sse2() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let interesting = b"<>&\r\n\t /:=\"'\x00\x1f\x20\x21\x7f\x80\xff\xc3a";
        for round in 0..20_000 {
            let mut c = [0u8; 16];
            for (k, byte) in c.iter_mut().enumerate() {
                let r = next();
                *byte = if round < 256 {
                    // Every byte value in every lane.
                    (round as u8).wrapping_add(k as u8)
                } else if r % 3 == 0 {
                    interesting[(r >> 8) as usize % interesting.len()]
                } else {
                    (r >> 16) as u8
                };
            }
            // SAFETY: this build has SSE2 (cfg above).
            let (t, n) = unsafe { (sse2::text(&c), sse2::name(&c)) };
            assert_eq!(swar::text(&c), t, "{c:?}");
            assert_eq!(swar::name(&c), n, "{c:?}");
            let mut d = c;
            d[(round % 16) as usize] ^= (round >> 4) as u8;
            d.rotate_left((round % 3) as usize);
            // SAFETY: as above.
            assert_eq!(
                swar::same(&c, &d),
                unsafe { sse2::same(&c, &d) },
                "{c:?} {d:?}"
            );
            let set = [b'>', b'"', b'\'', b'\r', 0x80];
            // SAFETY: as above.
            let a = unsafe { sse2::any_of(&c, set) };
            assert_eq!(swar::any_of(&c, set), a, "{c:?}");
        }
    }

    #[test]
    fn text_runs_and_names_across_chunk_boundaries() {
        for pad in 0..40 {
            let text = "x".repeat(pad);
            let doc = format!("{text}&amp;<a>");
            assert_eq!(text_run(doc.as_bytes(), 0), (pad + 5, false), "{pad}");
            let doc = format!("{text}<a>");
            assert_eq!(text_run(doc.as_bytes(), 0), (pad, true));
            assert_eq!(text_run(text.as_bytes(), 0), (pad, true));
            let doc = format!("{text}\r");
            assert_eq!(text_run(doc.as_bytes(), 0), (pad + 1, false));
            // `&` after the `<` does not count.
            let doc = format!("{text}<&");
            assert_eq!(text_run(doc.as_bytes(), 0), (pad, true));

            let name = format!("p{text}:n{text}");
            let doc = format!("<{name}>");
            assert_eq!(
                name_end(doc.as_bytes(), 1),
                Ok((1 + name.len(), 1 + pad + 2)),
                "{name}"
            );
            let doc = format!("<{name} a='1'/>");
            assert_eq!(name_end(doc.as_bytes(), 1).unwrap().0, 1 + name.len());
            let doc = format!("<{name}");
            assert_eq!(name_end(doc.as_bytes(), 1), Err(XmlError::Truncated));
            for bad in ["<", "=", "\"", "'", "&"] {
                let doc = format!("<a{text}{bad}b>");
                assert!(name_end(doc.as_bytes(), 1).is_err(), "{doc}");
            }
        }
        assert!(name_end(b"<1a>", 1).is_err());
        // Found by fuzzing: with two colons the prefix still ends at the first.
        assert_eq!(name_end(b"<a:b:c>", 1), Ok((6, 3)));
        assert_eq!(name_end(b"<:a>", 1), Ok((3, 2)));
        assert!(name_end(b"< a>", 1).is_err());
    }

    #[test]
    fn finds_bytes_and_attribute_value_ends_across_chunk_boundaries() {
        for pad in 0..40 {
            let text = "x".repeat(pad);
            let doc = format!("{text}'a>");
            let b = doc.as_bytes();
            assert_eq!(find_any(b, 0, [b'>', b'\'']), Some(pad));
            assert_eq!(find_any(b, 0, [b'>']), Some(pad + 2));
            assert_eq!(find_any(b, pad + 1, [b'\'']), None);
            assert_eq!(find_any(b, b.len() + 3, [b'x']), None);
            for (end, stop) in [("\"", pad), ("<", pad)] {
                let doc = format!("{text}{end}&");
                assert_eq!(attr_value_end(doc.as_bytes(), 0, b'"'), Some((stop, true)));
            }
            for special in ["&", "\t", "\n", "\r"] {
                let doc = format!("{text}{special}{text}'");
                let end = 2 * pad + 1;
                assert_eq!(attr_value_end(doc.as_bytes(), 0, b'\''), Some((end, false)));
                assert_eq!(attr_value_end(doc.as_bytes(), 0, b'"'), None);
            }
        }
    }

    #[test]
    fn rejects_doctype_and_truncation() {
        assert_eq!(tokens("<!DOCTYPE x []><x/>"), Err(XmlError::Doctype));
        assert_eq!(tokens("<a"), Err(XmlError::Truncated));
        assert_eq!(tokens("<abcdefghijklmnop"), Err(XmlError::Truncated));
        assert_eq!(tokens("<a x='1>"), Err(XmlError::Truncated));
        assert_eq!(tokens("<!-- open"), Err(XmlError::Truncated));
        assert_eq!(tokens("<?xml open"), Err(XmlError::Truncated));
        assert_eq!(tokens("<![CDA"), Err(XmlError::Truncated));
        assert_eq!(tokens("</a"), Err(XmlError::Truncated));
        assert!(tokens("<1a/>").is_err());
        assert!(tokens("<a<b/>").is_err());
        assert!(tokens("<abcdefghij<b/>").is_err());
        assert!(tokens("</a b>").is_err());
        assert!(tokens("<!ELEMENT x>").is_err());
    }

    #[test]
    fn unescapes_references_and_line_ends() {
        assert!(matches!(unescape("plain").unwrap(), Cow::Borrowed("plain")));
        assert_eq!(
            unescape("N&lt;+49&gt;;a=&amp;&#65;&#x42;").unwrap(),
            "N<+49>;a=&AB"
        );
        assert_eq!(unescape("a\r\nb\rc&#13;").unwrap(), "a\nb\nc\r");
        assert!(unescape("&bogus;").is_err());
        // The predefined entities whole, and their near misses.
        assert_eq!(
            unescape("&quot;&apos;&amp;&lt;&gt;é&#xE9;").unwrap(),
            "\"'&<>éé"
        );
        for bad in ["&lt", "&gt", "&amp", "&quo;", "&apos", "&am;", "&l;", "x&"] {
            assert!(unescape(bad).is_err(), "{bad}");
        }
        assert!(unescape("&#0;").is_err());
        assert!(unescape("&#x;").is_err());
        assert!(unescape("&#+5;").is_err());
        assert!(unescape("& alone").is_err());
        // The `;` is looked for at most 12 bytes after the `&`.
        assert_eq!(unescape("x&#x000000041;").unwrap(), "xA");
        assert!(unescape("x&#x0000000041;").is_err());
        assert!(unescape("x&amp").is_err());
        assert_eq!(normalize_eol("x\r\ny\r"), "x\ny\n");
    }

    /// The first reading of the rules on `str`, as an oracle for the chunked `unescape_from`.
    fn unescape_oracle(raw: &str) -> Result<String, XmlError> {
        let mut out = String::new();
        let mut rest = raw;
        while let Some(c) = rest.chars().next() {
            match c {
                '&' => {
                    let (ch, n) = match () {
                        _ if rest.starts_with("&lt;") => ('<', 4),
                        _ if rest.starts_with("&gt;") => ('>', 4),
                        _ if rest.starts_with("&amp;") => ('&', 5),
                        _ if rest.starts_with("&quot;") => ('"', 6),
                        _ if rest.starts_with("&apos;") => ('\'', 6),
                        _ => {
                            let bad = || XmlError::BadReference(truncate(rest));
                            let semi = rest.bytes().take(13).position(|c| c == b';');
                            let semi = semi.ok_or_else(bad)?;
                            (char_ref(&rest[1..semi]).ok_or_else(bad)?, semi + 1)
                        }
                    };
                    out.push(ch);
                    rest = &rest[n..];
                }
                '\r' => {
                    out.push('\n');
                    rest = rest.strip_prefix("\r\n").unwrap_or(&rest[1..]);
                }
                c => {
                    out.push(c);
                    rest = &rest[c.len_utf8()..];
                }
            }
        }
        Ok(out)
    }

    proptest::proptest! {
        #[test]
        fn unescape_matches_the_oracle(
            raw in "([a-z0-9;#\r\n\u{e9}\u{1F600}]|&(lt|gt|amp|quot|apos|#[0-9]{1,12}|#x[0-9a-fA-F]{1,11}|[a-z]{0,4});?){0,40}"
        ) {
            proptest::prop_assert_eq!(unescape(&raw).map(Cow::into_owned), unescape_oracle(&raw));
        }
    }

    #[test]
    fn unescapes_across_chunk_boundaries() {
        let refs = [
            "&lt;",
            "&gt;",
            "&amp;",
            "&quot;",
            "&apos;",
            "&#65;",
            "&#x1F600;",
            "&#233;",
            "\r",
            "\r\n",
            "&lt",
            "&amp",
            "&quot",
            "&",
            "&#0;",
            "&#x0000000041;",
        ];
        for pad in 0..40 {
            let text = "x".repeat(pad);
            for r in refs {
                for s in [
                    format!("{text}{r}"),
                    format!("{r}{text}"),
                    format!("{text}{r}{text}{r}"),
                    format!("{text}{r}é{r}{text}"),
                ] {
                    assert_eq!(
                        unescape(&s).map(Cow::into_owned),
                        unescape_oracle(&s),
                        "{s:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn helpers() {
        assert_eq!(trim_xml(" \t\r\n x y \n"), "x y");
        assert_eq!(trim_xml("\u{a0}x\u{a0}"), "\u{a0}x\u{a0}");
        assert_eq!(trim_xml("   "), "");
        assert!(all_space(" \n") && !all_space(" x"));
        for (a, b) in [
            ("", ""),
            ("abc", "abc"),
            ("abcdefgh", "abcdefgh"),
            ("abcdefghijk", "abcdefghijk"),
        ] {
            assert!(same(a.as_bytes(), b.as_bytes()));
        }
        assert!(!same(b"abcdefghijk", b"abcdefghijx"));
        assert!(!same(b"xbcdefghijk", b"abcdefghijk"));
        assert!(!same(b"abcdefghi", b"abcdefghij"));
        assert!(!same(b"abc", b"abd"));
        for n in 0..40 {
            let name: Vec<u8> = (0..n).map(|k| b'a' + k as u8).collect();
            assert!(same(&name, &name.clone()), "{n}");
            for at in 0..n {
                let mut other = name.clone();
                other[at] ^= 1;
                assert!(!same(&name, &other), "{n} {at}");
            }
            // `same_at` with and without room for whole words after the names.
            for tail in [&b""[..], b">", b"> and more of the document"] {
                let mut doc = name.clone();
                doc.push(b'/');
                doc.extend_from_slice(&name);
                doc.extend_from_slice(tail);
                assert!(same_at(&doc, 0, n + 1, n), "{n}");
                for at in 0..n {
                    let mut bad = doc.clone();
                    bad[n + 1 + at] ^= 1;
                    assert!(!same_at(&bad, 0, n + 1, n), "{n} {at}");
                }
                // A range that runs past the end is never equal.
                if n > 0 {
                    let mut short = doc.clone();
                    short.truncate(2 * n);
                    assert!(!same_at(&short, 0, n + 1, n), "{n}");
                }
            }
        }
    }
}
