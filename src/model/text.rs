//! [`Text`]: an immutable UTF-8 string that can share the frame buffer it was decoded from.

use bytes::Bytes;
use std::fmt;

/// Immutable UTF-8 text backed by [`Bytes`]: cloning is a reference-count bump, and text decoded
/// from a frame points into the frame instead of being copied.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Text(Bytes);

// Hash exactly as `str` does, so `Borrow<str>` lookups in hash maps find the entry.
impl std::hash::Hash for Text {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl Text {
    /// Text from a static string, without allocating.
    pub const fn from_static(s: &'static str) -> Text {
        Text(Bytes::from_static(s.as_bytes()))
    }

    /// Text from a decoded value: shares `frame` when `s` lies inside it (a value borrowed from
    /// the frame), copies otherwise (a value that had references resolved).
    pub fn from_frame(frame: &Bytes, s: &str) -> Text {
        let start = frame.as_ptr() as usize;
        let p = s.as_ptr() as usize;
        if p >= start && p + s.len() <= start + frame.len() {
            Text(frame.slice_ref(s.as_bytes()))
        } else {
            Text::from(s)
        }
    }

    /// `sub` as a `Text` sharing this one's buffer when it is a slice of it, copied otherwise.
    pub fn slice_of(&self, sub: &str) -> Text {
        Text::from_frame(&self.0, sub)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor takes a `&str`, a `String` or a slice of one, so the bytes are
        // valid UTF-8; `Bytes` is immutable.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// Byte length.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Text {
        Text(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text(Bytes::from(s.into_bytes()))
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

    #[test]
    fn shares_the_frame_when_borrowed() {
        let frame = Bytes::from_static(b"<a>hello</a>");
        let s = std::str::from_utf8(&frame[3..8]).unwrap();
        let t = Text::from_frame(&frame, &Cow::Borrowed(s));
        assert_eq!(t, "hello");
        assert_eq!(t.0.as_ptr(), frame[3..].as_ptr());
        // Text outside the frame is copied, not a panic.
        let t = Text::from_frame(&frame, &Cow::Borrowed("elsewhere"));
        assert_eq!(t, "elsewhere");
        let t = Text::from_frame(&frame, &Cow::Owned("owned".into()));
        assert_eq!(t.as_str(), "owned");
    }

    #[test]
    fn str_lookups_in_hash_maps() {
        let mut m = std::collections::HashMap::new();
        m.insert(Text::from("X100"), 1);
        assert_eq!(m.get("X100"), Some(&1));
    }
}
