//! Pre-clean, install and upgrade (SPEC section 3 steps 5-7): the app's env
//! file, the deploys, and the convergence wait after each.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::{infra, recipe, stage::OVERLAY_PREFIX, Run};
use crate::config;
use crate::exit::{self, Failure};
use crate::ext::abra::marker;
use crate::ext::docker::events::Events;
use crate::ext::git::Repo;
use crate::ext::Bound;
use crate::phase::Phase;
use crate::rundir;
use crate::say;
use crate::teardown::{self, App};
use crate::testrun::meta::Tier;

/// `text` (an env file) with `vars` set, each single-quoted (abra's
/// godotenv reader takes a single-quoted value literally; the settings
/// refuse a value with a quote or a line break).
pub(super) fn with_vars(text: &str, vars: &crate::settings::Vars) -> String {
    vars.iter().fold(text.to_string(), |t, (k, v)| {
        recipe::set_env(&t, k, &format!("'{v}'"))
    })
}

/// Copies the settings' overlays into the run's own checkout (abra joins
/// every `COMPOSE_FILE` entry to the recipe's directory, so a file outside
/// it cannot be named) as `ccci-overlay-<name>`, and lists that pattern in
/// the checkout's `.git/info/exclude`: the tree stays clean for git's
/// status, which is how abra decides the chaos-version's `+U`. The copies
/// are untracked, so moving the checkout to the ref under test keeps them.
/// Returns the `COMPOSE_FILE` entries.
pub(super) fn stage_overlays(checkout: &Path, overlays: &[PathBuf]) -> Result<Vec<String>> {
    let exclude = checkout.join(".git").join("info").join("exclude");
    let pattern = format!("/{OVERLAY_PREFIX}*");
    let old = match std::fs::read_to_string(&exclude) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(
                anyhow::Error::new(e).context(format!("failed to read {}", exclude.display()))
            )
        }
    };
    if !old.lines().any(|l| l == pattern) {
        if let Some(dir) = exclude.parent() {
            rundir::mkdirs(dir)?;
        }
        let mut text = old;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&pattern);
        text.push('\n');
        rundir::write_atomic(&exclude, text.as_bytes())
            .with_context(|| format!("failed to write {}", exclude.display()))?;
    }
    let mut names = Vec::new();
    for src in overlays {
        let base = src
            .file_name()
            .with_context(|| format!("overlay {} has no file name", src.display()))?;
        let name = format!("{OVERLAY_PREFIX}{}", base.to_string_lossy());
        std::fs::copy(src, checkout.join(&name)).with_context(|| {
            format!(
                "failed to copy overlay {} into the run's checkout",
                src.display()
            )
        })?;
        names.push(name);
    }
    Ok(names)
}

impl Run {
    pub(super) fn app(&self) -> App<'_> {
        App {
            server: &self.cfg.server,
            domain: &self.cfg.domain,
            stack: &self.cfg.stack,
        }
    }

    pub(super) fn preclean(&mut self) -> Result<()> {
        let b = self.teardown_bound();
        // An app that cc-ci-run did not create is never torn down: a
        // `--domain` that names an operator's app stops the run instead.
        if let Some(env_file) = self.foreign_app() {
            return Err(Failure::infra(format!(
                "an app that cc-ci-run did not create exists at {} ({} has no `{}` line): not touching it; remove it or test on another domain",
                self.cfg.domain,
                env_file.display(),
                marker::PREFIX.trim_end()
            )));
        }
        if teardown::present(&self.abra, &self.docker, self.app(), &b)? {
            say!(
                "an app is already deployed at {}: an orphan of a dead run, tearing it down first",
                self.cfg.domain
            );
            let lock = self
                .app_lock
                .as_deref()
                .context("pre-clean without the app lock")?;
            lock.may_mutate()?;
            teardown::teardown(&self.abra, &self.docker, self.app(), &b, lock)
                .map_err(infra("pre-clean of an orphan failed"))?;
        }
        Ok(())
    }

    /// The env file of an app at our domain that this run did not create
    /// and that carries no marker: an operator's app, never touched. (An
    /// app this run created is ours even if the run stopped before it could
    /// write the marker.)
    pub(super) fn foreign_app(&self) -> Option<PathBuf> {
        if self.app_news > 0 {
            return None;
        }
        let env_file = self.abra.env_file(&self.cfg.server, &self.cfg.domain);
        match std::fs::read_to_string(&env_file) {
            Ok(text) if marker::find(&text).is_none() => Some(env_file),
            _ => None,
        }
    }

    /// Right after `app new`, in one atomic write: the ownership marker the
    /// janitor requires before it may reap the app (SPEC section 5), no
    /// certificates for test apps, the settings' `env` and `overlays`
    /// (SPEC section 3b; the overlays copied into the checkout first).
    pub(super) fn prepare_env_file(&self, repo: &Repo) -> Result<()> {
        let path = self.abra.env_file(&self.cfg.server, &self.cfg.domain);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("failed to read {}", path.display()))?;
        let line = marker::line(
            &self.cfg.run_id,
            &crate::sys::procfs::hostname(),
            &crate::log::timestamp(std::time::SystemTime::now()),
        );
        let mut text = recipe::set_env(&text, "LETS_ENCRYPT_ENV", "");
        if let Some(env) = &self.settings.env {
            text = with_vars(&text, &env.value);
        }
        if let Some(overlays) = &self.settings.overlays {
            let names = stage_overlays(repo.dir(), &overlays.value)?;
            let current = recipe::parse_env(&text)
                .get("COMPOSE_FILE")
                .filter(|v| !v.is_empty())
                .cloned()
                .unwrap_or_else(|| "compose.yml".to_string());
            let list = std::iter::once(current)
                .chain(names)
                .collect::<Vec<_>>()
                .join(":");
            say!("COMPOSE_FILE={list} (overlays from ccci.toml)");
            text = recipe::set_env(&text, "COMPOSE_FILE", &format!("'{list}'"));
        }
        rundir::write_atomic(&path, marker::with_marker(&text, &line).as_bytes())
            .with_context(|| format!("failed to mark {} as created by this run", path.display()))
    }

    pub(super) fn install(&mut self, repo: &Repo, base: &Option<String>) -> Result<()> {
        self.set_phase(Phase::Install);
        let b = self.bound();
        let infra = infra("install tier: deploy failed");
        self.app_news += 1;
        self.abra
            .app_new(
                &self.cfg.recipe,
                base.as_deref(),
                &self.cfg.server,
                &self.cfg.domain,
                base.is_none(),
                &b,
            )
            .map_err(infra)?;
        self.prepare_env_file(repo).map_err(infra)?;
        let bound = self.read_for_deploy(repo)?;
        self.app_lock.as_ref().map_or(Ok(()), |l| l.may_mutate())?;
        self.deploys += 1;
        let deployed_at = std::time::SystemTime::now();
        // Subscribed before the deploy, so that the wait hears all it does.
        let events = self.docker.subscribe(&self.cfg.stack, deployed_at);
        self.abra
            .deploy(&self.cfg.domain, base.as_deref(), base.is_none(), false, &b)
            .map_err(infra)?;
        self.converge(Tier::Install, Some(deployed_at), events, bound)
    }

    /// Before a deploy: the compose files it will use (the `COMPOSE_FILE`
    /// of the app's env file, at the checkout as it now is) read as docker
    /// reads them with the values abra gives it, so that a `${VAR:?msg}`
    /// with VAR missing fails here (exit 1, naming the variable and the
    /// file) and not in the deploy; and the convergence bound that applies
    /// to that deploy (SPEC section 3a), said and recorded.
    pub(super) fn read_for_deploy(&mut self, repo: &Repo) -> Result<Duration> {
        let env_file = self.abra.env_file(&self.cfg.server, &self.cfg.domain);
        let (env, vars) = recipe::values_for(repo.dir(), &env_file, &self.cfg.stack)?;
        let compose = recipe::read_compose(repo.dir(), &env_file, &env, &vars)?;
        // The operator's explicit bound, then the recipe's ccci.toml (the
        // CI's own knowledge of this recipe), then its timeout label.
        let setting = self.settings.converge_timeout.as_ref().map(|s| {
            (
                s.value,
                format!(
                    "converge_timeout in {}",
                    self.settings_origin(|s| s.converge_timeout.as_ref().map(|v| &v.from))
                ),
            )
        });
        let (bound, source) = match (
            self.cfg.bounds.converge_timeout,
            setting,
            recipe::timeout_label(&compose, &self.cfg.stack),
        ) {
            (Some(d), _, _) => (d, "--converge-timeout/CCCI_CONVERGE_TIMEOUT".to_string()),
            (None, Some(set), _) => set,
            (None, None, Some(Ok((d, label)))) => (d, format!("the recipe's label {label}")),
            (None, None, Some(Err(why))) => {
                say!("warning: the recipe's timeout label is not used: {why}");
                (
                    config::DEFAULT_CONVERGE_TIMEOUT,
                    "the default (the recipe's timeout label is not a number)".to_string(),
                )
            }
            (None, None, None) => (
                config::DEFAULT_CONVERGE_TIMEOUT,
                "the default (the recipe sets no timeout label)".to_string(),
            ),
        };
        say!(
            "convergence bound {} from {source}",
            crate::units::human(bound)
        );
        self.record.converge_bound = Some(rundir::ConvergeBound {
            seconds: bound.as_secs(),
            source,
        });
        Ok(bound)
    }

    /// The convergence wait after a tier's deploy (`deployed_at`: when it
    /// began; None when the tier deployed nothing).
    pub(super) fn converge(
        &mut self,
        tier: Tier,
        deployed_at: Option<std::time::SystemTime>,
        events: Option<Events>,
        bound: Duration,
    ) -> Result<()> {
        self.set_phase(Phase::Converge(tier));
        let b = Bound {
            deadline: Some(Instant::now() + bound),
            ..self.bound()
        };
        let mut c = self
            .docker
            .wait_converged(
                &self.cfg.stack,
                deployed_at,
                events,
                self.cfg.bounds.stable_for,
                &b,
            )
            .map_err(infra(&format!("{tier} tier: convergence failed")))?;
        if tier == Tier::Restore && self.watch.is_some() {
            // The watch begun at the last deploy tier's convergence spans
            // the backup, the backup tier's tests, the restore and this
            // wait: they deploy nothing, so an exit here is the version's.
        } else {
            self.watch = None;
            match self.docker.watch(&self.cfg.stack, &mut c) {
                Ok(w) => self.watch = Some(w),
                Err(e) => {
                    say!("warning: {tier} tier: the watch through its tests could not start: {e:#}")
                }
            }
        }
        if let Some(w) = &c.warning {
            say!("warning: {tier} tier: {w}");
            self.record.warnings.push(format!("{tier} tier: {w}"));
        }
        // One line with the wait and the engine's own update time, so both
        // can be read from run.log (scripts/bench-converge.sh does).
        say!(
            "stack {} converged in {:.2} s: {}{}",
            self.cfg.stack,
            c.waited.as_secs_f64(),
            c.summary,
            c.engine_update
                .map(|d| format!(" (engine update {:.2} s)", d.as_secs_f64()))
                .unwrap_or_default()
        );
        Ok(())
    }

    pub(super) fn upgrade(&mut self, repo: &Repo, sha: &str) -> Result<()> {
        self.set_phase(Phase::Upgrade);
        let b = self.bound();
        let infra = infra("upgrade tier: deploy failed");
        repo.checkout(sha, &b).map_err(infra)?;
        if let Some(vars) = &self.settings.upgrade_env {
            let path = self.abra.env_file(&self.cfg.server, &self.cfg.domain);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("failed to read {}", path.display()))
                .map_err(infra)?;
            rundir::write_atomic(&path, with_vars(&text, &vars.value).as_bytes())
                .with_context(|| format!("failed to write upgrade_env into {}", path.display()))
                .map_err(infra)?;
            let names: Vec<&str> = vars.value.iter().map(|(k, _)| k.as_str()).collect();
            say!(
                "upgrade_env written into the app's env file: {}",
                names.join(", ")
            );
        }
        let bound = self.read_for_deploy(repo)?;
        self.app_lock.as_ref().map_or(Ok(()), |l| l.may_mutate())?;
        self.deploys += 1;
        // The install tier's watch ended with its tests: the upgrade
        // replaces its tasks on purpose.
        self.watch = None;
        let deployed_at = std::time::SystemTime::now();
        let events = self.docker.subscribe(&self.cfg.stack, deployed_at);
        self.abra
            .deploy(&self.cfg.domain, None, true, true, &b)
            .map_err(infra)?;
        self.converge(Tier::Upgrade, Some(deployed_at), events, bound)?;
        let labels = self.docker.app_labels(&self.cfg.stack, &b).map_err(infra)?;
        let key = format!("coop-cloud.{}.chaos-version", self.cfg.stack);
        let label = labels.get(&key).map(String::as_str).unwrap_or("");
        recipe::check_chaos_version(label, sha).map_err(|why| {
            Failure::with_code(
                exit::TESTS_FAILED,
                format!("upgrade tier failed: label {key}={label:?}: {why}"),
            )
        })?;
        say!("upgrade tier: chaos deploy of {sha} is running ({key}={label})");
        Ok(())
    }
}
