//! Concurrency tests: the real binary as separate processes, real signals,
//! real flocks, real /proc. One module per area.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod backuptier;
mod converge;
mod diskfull;
mod engine_api;
mod exec;
mod faults;
mod floor;
mod forms;
mod host;
mod janitor;
#[path = "../common/junit.rs"]
mod junit;
mod locks;
mod metrics;
mod output;
#[path = "../common/promtext.rs"]
mod promtext;
mod records;
mod redact;
mod reports;
mod run;
mod runtree;
mod settings;
mod spawn;
mod suites;
mod support;
mod teardown;
mod testrun;
mod timeline;
#[path = "../common/timeline_page.rs"]
mod timeline_page;
mod verdict;
