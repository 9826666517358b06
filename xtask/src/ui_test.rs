//! `cargo xtask ui-test`: the dashboard's browser test
//! (`crates/meta-node/tests/it/dashboard.rs`) in headless Chromium through
//! ChromeDriver. Without a browser it fails and says how to install one; it
//! never passes without having run.

use crate::project_root;

/// Where Chromium and ChromeDriver are (`META_CHROMIUM`,
/// `META_CHROMEDRIVER`, else on `PATH`), or what to install.
pub fn find_browser() -> Result<(), String> {
    let mut missing = Vec::new();
    for (var, names) in [
        (
            "META_CHROMIUM",
            &["chromium", "chromium-browser", "google-chrome"][..],
        ),
        ("META_CHROMEDRIVER", &["chromedriver"][..]),
    ] {
        let found = match std::env::var(var) {
            Ok(path) => std::path::Path::new(&path).is_file(),
            Err(_) => names.iter().any(|name| on_path(name)),
        };
        if !found {
            missing.push(names[0]);
        }
    }
    match missing.is_empty() {
        true => Ok(()),
        false => Err(format!(
            "{} not found: install them (Debian: `apt-get install chromium chromium-driver`), \
             or point META_CHROMIUM and META_CHROMEDRIVER at them",
            missing.join(" and ")
        )),
    }
}

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
}

/// Runs the browser test; whether it passed.
pub fn run() -> Result<bool, String> {
    find_browser()?;
    let status = crate::cargo()
        .current_dir(project_root())
        // `--workspace`, as the README's test command: the same features,
        // so the test binaries that command built are reused, not rebuilt
        // (the other crates' `it` binaries match no `dashboard::` test).
        .args(["test", "--workspace", "--test", "it", "dashboard::"])
        .args(["--", "--ignored", "--nocapture"])
        .status()
        .map_err(|e| format!("running cargo: {e}"))?;
    Ok(status.success())
}
