//! Fetch, checks and prepare (SPEC section 3 steps 1-3): the recipe at the
//! ref under test, its tests and overlays staged, its settings read, the base
//! release found.

use std::path::Path;

use anyhow::{Context, Result};

use super::{fetch, recipe, Run};
use crate::config::Base;
use crate::exit::{self, Failure};
use crate::ext::git::Repo;
use crate::rundir;
use crate::say;
use crate::settings::Settings;

/// The prefix of an overlay's copy in the run's checkout.
pub(super) const OVERLAY_PREFIX: &str = "ccci-overlay-";

impl Run {
    /// Per-run ABRA_DIR (servers and catalogue linked to the canonical
    /// ones), then the recipe checkout from the canonical repository.
    pub(super) fn stage_recipe(&mut self) -> Result<Repo> {
        let abra_dir = self.dir.abra_dir();
        rundir::mkdirs(&abra_dir.join("recipes"))?;
        for name in ["servers", "catalogue"] {
            let target = self.abra_home.join(name);
            if name == "servers" || target.exists() {
                rundir::ensure_symlink(&target, &abra_dir.join(name)).map_err(|e| {
                    e.context(Failure::of(
                        exit::USAGE,
                        "the run's ABRA_DIR cannot be set up",
                    ))
                })?;
            }
        }
        say!("ABRA_DIR={}", abra_dir.display());
        let canonical = self.abra_home.join("recipes").join(&self.cfg.recipe);
        if !canonical.join(".git").exists() {
            return Err(Failure::infra(format!(
                "the canonical recipe checkout {} is missing: fetch the recipe there first (abra recipe fetch {})",
                canonical.display(),
                self.cfg.recipe
            )));
        }
        let b = self.bound();
        let dest = self.dir.recipe_checkout(&self.cfg.recipe);
        if self.cfg.skip_fetch {
            say!("CCCI_SKIP_FETCH=1: staging the canonical checkout as it is, no network");
        }
        let fetched = fetch::fetch(
            &fetch::Request {
                git: &self.tools.git,
                canonical: &canonical,
                dest: &dest,
                abra_dir: &abra_dir,
                root: &self.dir.state_dir,
                skip_fetch: self.cfg.skip_fetch,
                pr: self.cfg.pr,
                git_ref: self.cfg.git_ref.as_deref(),
                shown_ref: &self.record.git_ref,
                git_only: false,
            },
            &b,
        )?;
        let (repo, sha) = (fetched.repo, fetched.sha);
        say!(
            "recipe {} at {sha} ({})",
            self.cfg.recipe,
            self.record.git_ref
        );
        self.tags = fetched.tags;
        self.record.tested_version = self
            .tags
            .1
            .iter()
            .filter(|t| recipe::parse_version(t).is_some())
            .max()
            .cloned();
        self.record.sha = Some(sha.clone());
        self.sha = Some(sha);
        Ok(repo)
    }

    /// Copies the ref under test's `tests/` aside: the checkout moves to the
    /// base release for the install tier, but every tier runs the tests of
    /// the ref under test.
    pub(super) fn stage_tests(&self, checkout: &Path) -> Result<()> {
        let src = checkout.join("tests");
        let dest = self.dir.work().join("recipe-tests");
        if !src.is_dir() {
            return Ok(());
        }
        rundir::mkdirs(&dest)?;
        for entry in walkdir::WalkDir::new(&src).follow_links(false) {
            let entry = entry.context("failed to read the recipe's tests")?;
            let rel = entry
                .path()
                .strip_prefix(&src)
                .context("walkdir left its root")?;
            let to = dest.join(rel);
            if entry.file_type().is_dir() {
                rundir::mkdirs(&to)?;
            } else if entry.file_type().is_file() {
                std::fs::copy(entry.path(), &to)
                    .with_context(|| format!("failed to stage test {}", entry.path().display()))?;
            }
        }
        Ok(())
    }

    /// The recipe's settings (SPEC section 3b): the CI repository's
    /// ccci.toml over the one in the tested ref's `tests/` (its staged
    /// copy), every key validated; a bad file is exit 2 before any abra
    /// call.
    pub(super) fn read_settings(&mut self) -> Result<()> {
        let own = self
            .dir
            .work()
            .join("recipe-tests")
            .join(crate::settings::FILE);
        let staged = own.display().to_string();
        self.settings =
            crate::settings::effective(&self.cfg.ci_tests_dir, &self.cfg.recipe, Some(&own))
                .map_err(|e| {
                    // The staged copy is deleted with the run tree: name
                    // the file as the recipe's author knows it.
                    let msg =
                        format!("{e:#}").replace(&staged, "tests/ccci.toml (at the tested ref)");
                    Failure::usage(msg)
                })?;
        for line in self.settings.lines() {
            if !line.ends_with("# from default") {
                say!("setting {}", line.replace(&staged, "tests/ccci.toml"));
            }
        }
        Ok(())
    }

    /// Where a setting came from, as the run says it.
    pub(super) fn settings_origin<'a>(
        &'a self,
        pick: impl Fn(&'a Settings) -> Option<&'a crate::settings::Origin>,
    ) -> String {
        let own = self.dir.work().join("recipe-tests");
        match pick(&self.settings) {
            Some(o) if o.file.starts_with(&own) => format!("tests/ccci.toml:{}", o.line),
            Some(o) => o.to_string(),
            None => "ccci.toml".to_string(),
        }
    }

    pub(super) fn base_version(&self, repo: &Repo) -> Result<Option<String>> {
        let (merged, at) = &self.tags;
        let latest = || recipe::latest_release_before(merged, at);
        let base = match (&self.cfg.base, &self.settings.base) {
            (Some(b), _) => b.clone(),
            (None, Some(s)) => {
                say!(
                    "base from {}",
                    self.settings_origin(|s| s.base.as_ref().map(|v| &v.from))
                );
                s.value.clone()
            }
            (None, None) => Base::LatestRelease,
        };
        Ok(match &base {
            Base::LatestRelease => latest(),
            Base::Version(v) => {
                if !merged.contains(v)
                    && repo
                        .resolve(&format!("refs/tags/{v}"), &self.bound())?
                        .is_none()
                {
                    return Err(Failure::usage(format!(
                        "invalid base {v:?}: no such release tag in the recipe"
                    )));
                }
                Some(v.clone())
            }
            Base::LastGreen => {
                // A state directory that cannot be read has no green run
                // to offer: the latest release is the base then.
                let green = rundir::load_records(&self.dir.state_dir)
                    .unwrap_or_default()
                    .into_iter()
                    .rev()
                    .find(|r| {
                        r.recipe == self.cfg.recipe
                            && r.exit_code == Some(0)
                            && r.tested_version.is_some()
                    })
                    .and_then(|r| r.tested_version);
                match green {
                    Some(v) => Some(v),
                    None => {
                        say!(
                            "no green run of a release of {} on record: using the latest release",
                            self.cfg.recipe
                        );
                        latest()
                    }
                }
            }
        })
    }
}
