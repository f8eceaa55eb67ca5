//! Helpers shared by the tensor crate's integration tests.

use proptest::prelude::*;

/// Every element of `got` within `tol * (1 + |want|)` of its f64 reference.
pub fn close(got: &[f32], want: &[f64], tol: f64) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        prop_assert!(
            (*g as f64 - w).abs() <= tol * (1.0 + w.abs()),
            "index {}: {} vs {}",
            i,
            g,
            w
        );
    }
    Ok(())
}
