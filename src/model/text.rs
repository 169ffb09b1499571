//! [`Text`]: an immutable UTF-8 string that is stored inline when short and otherwise shares the
//! frame buffer it was decoded from.

use bytes::Bytes;
use std::fmt;
use std::mem::MaybeUninit;

/// Longest text stored inline. 38 bytes hold the values events carry most (call ids of up to 38
/// characters, device numbers, causes, event names) while keeping `Text` at 40 bytes, the size
/// of the shared form plus its tag.
pub const INLINE: usize = 38;

/// Immutable UTF-8 text. Short text (up to [`INLINE`] bytes) is stored inline: making, cloning
/// and dropping it touch no shared counter and no allocator, which is most of what normalizing an
/// event costs otherwise (a reference-count bump and drop are atomic operations). Longer text is
/// backed by [`Bytes`]: cloning is a reference-count bump, and text decoded from a frame points
/// into the frame instead of being copied.
pub struct Text(Repr);

// `Text::copy_inline` copies an inline text as five words.
const _: () =
    assert!(size_of::<Text>() == size_of::<[u64; 5]>() && align_of::<Text>() == align_of::<u64>());

enum Repr {
    /// The first `len` bytes of `buf` (`len <= INLINE`).
    Inline { len: u8, buf: [u8; INLINE] },
    /// Longer text.
    Shared(Bytes),
}

impl Clone for Text {
    #[inline]
    fn clone(&self) -> Text {
        match &self.0 {
            Repr::Inline { .. } => {
                let mut t = Text::default();
                t.copy_inline(self);
                t
            }
            Repr::Shared(b) => Text(Repr::Shared(b.clone())),
        }
    }
}

impl Default for Text {
    fn default() -> Text {
        Text(Repr::Inline {
            len: 0,
            buf: [0; INLINE],
        })
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Text) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Text {}

impl PartialOrd for Text {
    fn partial_cmp(&self, other: &Text) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Text {
    fn cmp(&self, other: &Text) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

// Hash exactly as `str` does, so `Borrow<str>` lookups in hash maps find the entry.
impl std::hash::Hash for Text {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl Text {
    /// Text from a static string, without allocating.
    pub const fn from_static(s: &'static str) -> Text {
        let b = s.as_bytes();
        if b.len() > INLINE {
            return Text(Repr::Shared(Bytes::from_static(b)));
        }
        let mut buf = [0u8; INLINE];
        let mut i = 0;
        while i < b.len() {
            buf[i] = b[i];
            i += 1;
        }
        Text(Repr::Inline {
            len: b.len() as u8,
            buf,
        })
    }

    /// Short text copied inline, or `None` when it is longer than [`INLINE`].
    #[inline]
    fn inline(s: &str) -> Option<Text> {
        let b = s.as_bytes();
        if b.len() > INLINE {
            return None;
        }
        let mut t = Text::default();
        t.set_inline(b);
        Some(t)
    }

    /// Makes this text the short bytes `b` (at most [`INLINE`]; the valid UTF-8 of a `&str` or
    /// of another text), in place.
    #[inline(always)]
    fn set_inline(&mut self, b: &[u8]) {
        if let Repr::Shared(_) = self.0 {
            *self = Text::default();
        }
        if let Repr::Inline { len, buf } = &mut self.0 {
            copy_short(buf, b);
            // Fits: callers pass at most INLINE (38) bytes.
            *len = b.len() as u8;
        }
    }

    /// Text from a decoded value: inline when short; otherwise it shares `frame` when `s` lies
    /// inside it (a value borrowed from the frame), and is copied when not (a value that had
    /// references resolved).
    #[inline]
    pub fn from_frame(frame: &Bytes, s: &str) -> Text {
        if let Some(t) = Text::inline(s) {
            return t;
        }
        Text(Repr::Shared(shared_slice(frame, s)))
    }

    /// Sets `slot` to [`Text::from_frame`]`(frame, s)`, writing short text where it will stay.
    /// Building the text elsewhere and moving it in costs more than the copy itself: the move
    /// reads back, in wide loads, bytes just written in pieces, and the processor cannot forward
    /// such stores to the load, so it waits for them to reach the cache.
    #[inline]
    pub fn set_from_frame(slot: &mut Option<Text>, frame: &Bytes, s: &str) {
        slot.insert(Text::default()).assign_from_frame(frame, s);
    }

    /// Makes this text [`Text::from_frame`]`(frame, s)` in place (see [`Text::set_from_frame`]).
    /// The short case is a few moves, inlined; the long one is a call.
    #[inline(always)]
    pub fn assign_from_frame(&mut self, frame: &Bytes, s: &str) {
        if s.len() <= INLINE {
            self.set_inline(s.as_bytes());
        } else {
            self.assign_shared(frame, s);
        }
    }

    #[inline(never)]
    fn assign_shared(&mut self, frame: &Bytes, s: &str) {
        self.0 = Repr::Shared(shared_slice(frame, s));
    }

    /// Makes this text a copy of `other` in place (see [`Text::set_from_frame`]).
    #[inline]
    pub fn assign(&mut self, other: &Text) {
        match &other.0 {
            Repr::Inline { .. } => {
                if let Repr::Shared(_) = self.0 {
                    *self = Text::default();
                }
                self.copy_inline(other);
            }
            Repr::Shared(b) => self.0 = Repr::Shared(b.clone()),
        }
    }

    /// Makes this inline text a copy of the inline text `other`, copied whole as five words. An
    /// enum assignment (or the derived clone) moves the 39 bytes after the tag through a stack
    /// temporary in overlapping pieces of different widths, and the processor cannot forward
    /// such stores to the load that reads them back (the normalizer's hottest instructions in
    /// `perf annotate` before this).
    #[inline(always)]
    fn copy_inline(&mut self, other: &Text) {
        debug_assert!(matches!(
            (&self.0, &other.0),
            (Repr::Inline { .. }, Repr::Inline { .. })
        ));
        // SAFETY: both are `Text`s, 40 bytes aligned as `u64` (asserted with the type), so both
        // can be accessed as `MaybeUninit<[u64; 5]>` (which carries any padding as it is), and
        // they do not overlap (`&mut` and `&`). `self` is inline, so overwriting it leaks
        // nothing; `other` is inline and owns nothing, so the copy is an independent value.
        unsafe {
            std::ptr::copy_nonoverlapping(
                (other as *const Text).cast::<MaybeUninit<[u64; 5]>>(),
                (self as *mut Text).cast::<MaybeUninit<[u64; 5]>>(),
                1,
            );
        }
    }

    /// The buffer a long text shares (`None` for inline text).
    pub(crate) fn buffer(&self) -> Option<&Bytes> {
        match &self.0 {
            Repr::Shared(b) => Some(b),
            Repr::Inline { .. } => None,
        }
    }

    /// The text.
    #[inline]
    pub fn as_str(&self) -> &str {
        let bytes = match &self.0 {
            Repr::Inline { len, buf } => buf.get(..usize::from(*len)).unwrap_or_default(),
            Repr::Shared(b) => b,
        };
        // SAFETY: every constructor takes a `&str`, a `String` or a slice of one and stores its
        // bytes whole (inline: the first `len` bytes are exactly the string's bytes), so they
        // are valid UTF-8; neither form is ever mutated.
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }

    /// Byte length.
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Inline { len, .. } => usize::from(*len),
            Repr::Shared(b) => b.len(),
        }
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Copies `src` (at most [`INLINE`] bytes) to the start of `dst` with a few fixed-size,
/// possibly overlapping moves instead of a `memcpy` call, whose set-up costs more than copying a
/// short value (an event makes a dozen of these).
#[inline(always)]
fn copy_short(dst: &mut [u8; INLINE], src: &[u8]) {
    let n = src.len();
    if n >= 16 {
        dst[..16].copy_from_slice(&src[..16]);
        if n > 32 {
            dst[16..32].copy_from_slice(&src[16..32]);
        }
        dst[n - 16..n].copy_from_slice(&src[n - 16..]);
    } else if n >= 8 {
        dst[..8].copy_from_slice(&src[..8]);
        dst[n - 8..n].copy_from_slice(&src[n - 8..]);
    } else if n >= 4 {
        dst[..4].copy_from_slice(&src[..4]);
        dst[n - 4..n].copy_from_slice(&src[n - 4..]);
    } else {
        dst[..n].copy_from_slice(src);
    }
}

/// `s` as a slice of `buf` when it lies inside it, else a copy.
#[inline]
fn shared_slice(buf: &Bytes, s: &str) -> Bytes {
    let start = buf.as_ptr() as usize;
    let p = s.as_ptr() as usize;
    if p >= start && p + s.len() <= start + buf.len() {
        buf.slice_ref(s.as_bytes())
    } else {
        Bytes::copy_from_slice(s.as_bytes())
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Text {
        Text::inline(s).unwrap_or_else(|| Text(Repr::Shared(Bytes::copy_from_slice(s.as_bytes()))))
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text::inline(&s).unwrap_or_else(|| Text(Repr::Shared(Bytes::from(s.into_bytes()))))
    }
}

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl std::borrow::Borrow<str> for Text {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl serde::Serialize for Text {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Text, D::Error> {
        String::deserialize(d).map(Text::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    /// Where a shared text's bytes are, or `None` when it is inline.
    fn shared_ptr(t: &Text) -> Option<*const u8> {
        match &t.0 {
            Repr::Shared(b) => Some(b.as_ptr()),
            Repr::Inline { .. } => None,
        }
    }

    #[test]
    fn short_text_is_inline_long_text_shares_the_frame() {
        let long = "FF000100000000000A2D65C85C1C750000FF000100";
        let doc = format!("<a>hello</a><b>{long}</b>");
        let frame = Bytes::from(doc.into_bytes());
        let s = std::str::from_utf8(&frame[3..8]).unwrap();
        let t = Text::from_frame(&frame, &Cow::Borrowed(s));
        assert_eq!(t, "hello");
        assert_eq!(shared_ptr(&t), None);
        let s = std::str::from_utf8(&frame[15..15 + long.len()]).unwrap();
        let t = Text::from_frame(&frame, s);
        assert_eq!(t, long);
        assert_eq!(shared_ptr(&t), Some(frame[15..].as_ptr()));
        // A long slice of a shared text shares its buffer too; a short one is inline.
        let buf = t.buffer().unwrap();
        let sub = Text::from_frame(buf, &t[1..]);
        assert_eq!(
            (sub.as_str(), shared_ptr(&sub)),
            (&long[1..], Some(frame[16..].as_ptr()))
        );
        assert_eq!(shared_ptr(&Text::from_frame(buf, &t[..4])), None);
        // Text outside the frame is copied, not a panic.
        let t = Text::from_frame(&frame, &Cow::Borrowed("elsewhere"));
        assert_eq!(t, "elsewhere");
        let t = Text::from_frame(&frame, &Cow::Owned(long.repeat(2)));
        assert_eq!(t.as_str(), long.repeat(2));
    }

    #[test]
    fn every_inline_length_round_trips() {
        let all: String = ('a'..='z').chain('A'..='Z').collect();
        for n in 0..=INLINE + 2 {
            assert_eq!(Text::from(&all[..n]), &all[..n]);
            assert_eq!(Text::from(&all[1..n + 1]).as_str(), &all[1..n + 1]);
        }
    }

    #[test]
    fn both_forms_compare_hash_and_order_by_content() {
        let exactly = "a".repeat(INLINE);
        let over = "a".repeat(INLINE + 1);
        for s in ["", "x", exactly.as_str(), over.as_str()] {
            let a = Text::from(s);
            let b = Text::from(s.to_owned());
            let c = Text(Repr::Shared(Bytes::copy_from_slice(s.as_bytes())));
            assert_eq!(
                (a.as_str(), a.len(), a.is_empty()),
                (s, s.len(), s.is_empty())
            );
            assert_eq!(a, b);
            assert_eq!(a, c);
            assert_eq!(a.cmp(&c), std::cmp::Ordering::Equal);
            let h = |t: &Text| {
                use std::hash::{BuildHasher, RandomState};
                static S: std::sync::OnceLock<RandomState> = std::sync::OnceLock::new();
                S.get_or_init(RandomState::new).hash_one(t)
            };
            assert_eq!(h(&a), h(&c));
        }
        assert_eq!(shared_ptr(&Text::from(exactly.as_str())), None);
        assert!(shared_ptr(&Text::from(over.as_str())).is_some());
        const S: Text = Text::from_static("DeliveredEvent");
        assert_eq!(S, "DeliveredEvent");
        assert_eq!(
            Text::from_static("a long static text that does not fit inline"),
            "a long static text that does not fit inline"
        );
        assert_eq!(
            Text::from("b").cmp(&Text::from(over.as_str())),
            std::cmp::Ordering::Greater
        );
        assert_eq!(Text::default(), "");
    }

    #[test]
    fn clone_and_assign_copy_every_form_into_every_form() {
        let long = "a text long enough that it is not stored inline, 52 b";
        let forms = ["", "x", "+4989700123", &"i".repeat(INLINE), long];
        for from in forms {
            let src = Text::from(from);
            let copy = src.clone();
            assert_eq!((copy.as_str(), shared_ptr(&copy)), (from, shared_ptr(&src)));
            for onto in forms {
                let mut t = Text::from(onto);
                t.assign(&src);
                // A shared text is shared again, not copied; an inline one is inline.
                assert_eq!(
                    (t.as_str(), shared_ptr(&t)),
                    (from, shared_ptr(&src)),
                    "{onto:?}"
                );
            }
        }
    }

    #[test]
    fn str_lookups_in_hash_maps() {
        let mut m = std::collections::HashMap::new();
        m.insert(Text::from("X100"), 1);
        assert_eq!(m.get("X100"), Some(&1));
    }
}
