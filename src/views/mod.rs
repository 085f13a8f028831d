//! What an operator reads of the host besides the records themselves,
//! rewritten after every run and janitor sweep: the Prometheus text file
//! (`metrics`) and the timeline page (`timeline`). Both are pure renderers
//! over the run records plus one atomic file write; neither takes a lock a
//! run waits on.

pub mod metrics;
pub mod timeline;
