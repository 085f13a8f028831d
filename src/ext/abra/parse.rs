//! Parsing what abra prints (pure).

use anyhow::{Context, Result};
use serde::Deserialize;

/// One app of `abra app ls -m`. Only the fields cc-ci-run uses; the rest
/// (and any field a newer abra adds) is ignored.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct AppEntry {
    #[serde(default)]
    pub server: String,
    #[serde(default)]
    pub recipe: String,
    #[serde(default, rename = "appName")]
    pub app_name: String,
    #[serde(default)]
    pub domain: String,
    /// Filled only with `-S`: `deployed`, `unknown`, …; empty otherwise.
    #[serde(default)]
    pub status: String,
}

impl AppEntry {
    /// The app's domain (older abra versions fill only `appName`).
    pub fn name(&self) -> &str {
        if self.domain.is_empty() {
            &self.app_name
        } else {
            &self.domain
        }
    }
}

#[derive(Deserialize)]
struct ServerApps {
    #[serde(default)]
    apps: Vec<AppEntry>,
}

/// Parses `abra app ls -m`: an object keyed by server name whose values hold
/// `apps` and counts; `{}` when there are no apps at all.
pub fn parse_app_ls(text: &str) -> Result<Vec<AppEntry>> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    let map: std::collections::BTreeMap<String, ServerApps> = serde_json::from_str(trimmed)
        .context("abra app ls -m printed something that is not its JSON app list")?;
    let mut out = Vec::new();
    for (server, apps) in map {
        for mut app in apps.apps {
            if app.server.is_empty() {
                app.server = server.clone();
            }
            out.push(app);
        }
    }
    Ok(out)
}

/// The app a file of `$ABRA_DIR/servers/SERVER/` stands for, by its name,
/// as abra lists apps: `DOMAIN.env` is the app DOMAIN. Other names (no
/// `.env` suffix, a dotfile such as an editor's `.x.env.swp` or a bare
/// `.env`) are not apps. Whether the entry is a file is the caller's to
/// check (abra skips directories).
pub fn app_of_env_file(name: &str) -> Option<&str> {
    if name.starts_with('.') {
        return None;
    }
    name.strip_suffix(".env").filter(|d| !d.is_empty())
}
