//! The spare-buffer pool is process-wide, so its test runs in a binary of its own (no other test
//! gives or takes buffers meanwhile).

use tinynas_train::tensor::{give, pooled_bytes, release_pool, take_any};

/// A training leaves its buffers in the pool; `release_pool` (called by the search before each
/// bench firmware build) frees them, and the pool still works afterwards.
#[test]
fn release_pool_frees_the_spare_buffers() {
    give(vec![0.0f32; 1 << 18]);
    give(vec![0.0f32; 1 << 16]);
    assert!(pooled_bytes() >= ((1 << 18) + (1 << 16)) * 4);
    release_pool();
    assert_eq!(pooled_bytes(), 0);
    let v = take_any(1000);
    assert_eq!(v.len(), 1000);
    give(v);
    give(take_any(1 << 12));
    assert!(pooled_bytes() >= (1 << 12) * 4);
}
