//! The loadgen crate's integration tests, one binary (one link): the canonical scenarios under
//! every kernel configuration, scenario files (format, errors, orderings, expectations,
//! property tests), and `oomlab run`'s load and driver.

mod run;
mod scenario_file_props;
mod scenario_files;
mod scenarios;
