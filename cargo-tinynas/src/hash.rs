//! The one hash of fingerprints (datasets, search journals, imported data files): 64-bit FNV-1a,
//! from the `fnv` crate. Its values name cache files and journal folders on users' disks, so it
//! must never change (a test pins it).

use std::hash::Hasher;

/// A fingerprint built field by field.
#[derive(Default)]
pub struct Fingerprint(fnv::FnvHasher);

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fingerprint({:016x})", self.0.finish())
    }
}

impl Fingerprint {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a field: its bytes, then a separator byte, so that fields `("ab", "c")` and `("a",
    /// "bc")` differ.
    pub fn field(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
        self.0.write(&[0xff]);
    }

    /// Adds bytes to the current field (a long field fed in pieces; no separator).
    pub fn bytes(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
    }

    pub fn finish(&self) -> u64 {
        self.0.finish()
    }
}

/// 64-bit FNV-1a of `bytes`.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = fnv::FnvHasher::default();
    h.write(bytes);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_on_disk_never_change() {
        // The published FNV-1a test vectors, and a two-field fingerprint as datasets use it.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
        let mut f = Fingerprint::new();
        f.field(b"ab");
        f.field(b"c");
        assert_eq!(f.finish(), fnv1a(b"ab\xffc\xff"));
        let mut g = Fingerprint::new();
        g.field(b"a");
        g.field(b"bc");
        assert_ne!(f.finish(), g.finish());
    }
}
