//! Unit tests of the pure parts: no processes, no locks, no engine.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod config;
mod converge;
mod docker_events;
mod docker_watch;
mod engine_api;
mod envfile;
mod exec_fast;
mod exit;
mod floor;
mod git_refs;
mod history;
mod interpolate;
mod janitor_plan;
#[path = "../common/junit.rs"]
mod junit;
mod leftovers;
mod locks;
mod log;
mod manual;
mod metrics;
mod output_cap;
mod parse;
mod proc_stat;
#[path = "../common/promtext.rs"]
mod promtext;
mod recipe;
mod record_words;
mod redact;
mod settings;
mod summary;
mod swarmlock;
mod testrun_cases;
mod testrun_junit;
mod testrun_meta;
mod testrun_report;
mod testrun_select;
mod timeline;
#[path = "../common/timeline_page.rs"]
mod timeline_page;
mod units;
