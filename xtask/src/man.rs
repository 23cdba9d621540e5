//! `cargo xtask man`: man pages for canaryd (section 8, a system daemon)
//! and canaryctl (section 1, with one page per subcommand), rendered from
//! the clap definitions the binaries parse (`canary_userspace::cli`), so
//! a page cannot drift from `--help`.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use canary_userspace::cli;
use clap::CommandFactory;

/// Writes the pages into `dir`; returns their paths.
pub fn write(dir: &Path) -> Result<Vec<PathBuf>> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = vec![];
    let canaryd = cli::canaryd::Args::command();
    let page = dir.join("canaryd.8");
    let mut text = vec![];
    clap_mangen::Man::new(canaryd)
        .section("8")
        .render(&mut text)
        .context("rendering canaryd.8")?;
    fs::write(&page, text).with_context(|| format!("writing {}", page.display()))?;
    written.push(page);
    // canaryctl.1 and canaryctl-<subcommand>.1 for each subcommand.
    let before: Vec<PathBuf> = list(dir)?;
    clap_mangen::generate_to(cli::canaryctl::Args::command(), dir)
        .with_context(|| format!("writing canaryctl's pages into {}", dir.display()))?;
    for p in list(dir)? {
        if !before.contains(&p) || name_starts(&p, "canaryctl") {
            written.push(p);
        }
    }
    written.sort();
    written.dedup();
    Ok(written)
}

fn list(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect())
}

fn name_starts(p: &Path, prefix: &str) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_for_both_binaries_and_canaryctls_subcommands() {
        let dir = std::env::temp_dir().join(format!("canary-man-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let pages = write(&dir).unwrap();
        let read = |name: &str| fs::read_to_string(dir.join(name)).unwrap();
        assert!(read("canaryd.8").contains(".TH canaryd 8"));
        assert!(read("canaryd.8").contains("log\\-format"));
        assert!(read("canaryctl.1").contains(".TH canaryctl 1"));
        assert!(read("canaryctl-status.1").contains("wide"));
        assert!(pages.len() > 5, "{pages:?}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
