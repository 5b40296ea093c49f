//! Workloads and canonical scenarios (issues 4+).
