//! The access policy (placeholder while the policy lands).
