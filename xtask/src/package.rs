//! `cargo xtask package`: the Debian package `canary_<version>_amd64.deb`.
//!
//! The tree is laid out here and packed with `dpkg-deb --root-owner-group`,
//! not cargo-deb: dpkg-deb and dpkg-shlibdeps come with every Debian
//! machine, while cargo-deb is not installed and would be one more tool to
//! fetch and pin. What cargo-deb would have added (stripping, md5sums,
//! Installed-Size, shlibs) is a few lines each below.

use std::{
    fs,
    io::Write,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail, ensure};
use clap_complete::Shell;

use crate::{cmd, paths};

pub const NAME: &str = "canary";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const ARCH: &str = "amd64";
/// The project's commit identity; lintian wants a name and an address.
const MAINTAINER: &str = "canary maintainers <maintainers@users.noreply.r-seed-08abc234.example>";
const UNIT: &str = "canaryd.service";
/// Where the unit packaged from `packaging/canaryd.service` runs canaryd.
const SBIN_CANARYD: &str = "/usr/sbin/canaryd";

/// Every path the package installs, as `dpkg-deb -c` lists them (without
/// the leading `.`), directories included. The package test compares the
/// built package against this list, and so does `assemble` against its tree.
pub fn expected_paths() -> Vec<String> {
    let mut paths: Vec<String> = [
        "/etc/",
        "/etc/canary/",
        "/etc/canary/canary.toml",
        "/lib/",
        "/lib/systemd/",
        "/lib/systemd/system/",
        "/lib/systemd/system/canaryd.service",
        "/usr/",
        "/usr/bin/",
        "/usr/bin/canaryctl",
        "/usr/sbin/",
        "/usr/sbin/canaryd",
        "/usr/share/",
        "/usr/share/bash-completion/",
        "/usr/share/bash-completion/completions/",
        "/usr/share/bash-completion/completions/canaryctl",
        "/usr/share/canary/",
        "/usr/share/canary/alerts.yml",
        "/usr/share/canary/grafana-dashboard.json",
        "/usr/share/doc/",
        "/usr/share/doc/canary/",
        "/usr/share/doc/canary/README.md",
        "/usr/share/doc/canary/changelog.gz",
        "/usr/share/doc/canary/copyright",
        "/usr/share/fish/",
        "/usr/share/fish/vendor_completions.d/",
        "/usr/share/fish/vendor_completions.d/canaryctl.fish",
        "/usr/share/man/",
        "/usr/share/man/man1/",
        "/usr/share/man/man8/",
        "/usr/share/man/man8/canaryd.8.gz",
        "/usr/share/zsh/",
        "/usr/share/zsh/vendor-completions/",
        "/usr/share/zsh/vendor-completions/_canaryctl",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    paths.extend(
        CANARYCTL_PAGES
            .iter()
            .map(|p| format!("/usr/share/man/man1/{p}.1.gz")),
    );
    paths.sort();
    paths
}

/// canaryctl's man pages: its own and one per subcommand, as `cargo xtask
/// man` writes them. A new subcommand is added here too (`assemble` fails
/// until it is).
const CANARYCTL_PAGES: &[&str] = &[
    "canaryctl",
    "canaryctl-completions",
    "canaryctl-fleet",
    "canaryctl-fleet-status",
    "canaryctl-reload",
    "canaryctl-rollback",
    "canaryctl-rollout",
    "canaryctl-rollout-abort",
    "canaryctl-rollout-pause",
    "canaryctl-rollout-promote",
    "canaryctl-rollout-resume",
    "canaryctl-rollout-start",
    "canaryctl-rollout-status",
    "canaryctl-set-weight",
    "canaryctl-status",
    "canaryctl-version",
    "canaryctl-watch",
];

/// `target/debian`, where the package is written.
pub fn out_dir() -> PathBuf {
    paths::target_dir().join("debian")
}

/// `target/debian/canary_<version>_amd64.deb`.
pub fn deb_path() -> PathBuf {
    out_dir().join(format!("{NAME}_{VERSION}_{ARCH}.deb"))
}

/// `cargo xtask package`: release build, then the package.
pub fn build() -> Result<PathBuf> {
    println!("==> [1/2] build canaryd and canaryctl (release)");
    cmd::run(Command::new("cargo").args([
        "build",
        "--release",
        "-p",
        "canary-userspace",
        "--bins",
    ]))?;
    println!("==> [2/2] package");
    assemble(&paths::target_dir().join("release"))
}

/// Lays the package tree out from the binaries in `bin_dir` and the files
/// in `packaging/`, packs it with dpkg-deb; returns the .deb's path.
pub fn assemble(bin_dir: &Path) -> Result<PathBuf> {
    let out = out_dir();
    let root = out.join(format!("{NAME}_{VERSION}_{ARCH}"));
    if root.exists() {
        fs::remove_dir_all(&root).with_context(|| format!("removing {}", root.display()))?;
    }
    let packaging = paths::workspace_root().join("packaging");
    let tree = Tree { root: root.clone() };

    println!("package: binaries (stripped)");
    tree.binary(&bin_dir.join("canaryd"), "usr/sbin/canaryd")?;
    tree.binary(&bin_dir.join("canaryctl"), "usr/bin/canaryctl")?;

    println!("package: systemd unit, config, dashboard, alert rules");
    tree.file(
        &format!("lib/systemd/system/{UNIT}"),
        &packaged_unit(&packaging)?,
    )?;
    tree.file(
        "etc/canary/canary.toml",
        &read(&packaging.join("canary.toml"))?,
    )?;
    for f in ["grafana-dashboard.json", "alerts.yml"] {
        tree.file(&format!("usr/share/canary/{f}"), &read(&packaging.join(f))?)?;
    }

    println!("package: man pages");
    let man_tmp = out.join("man");
    let _ = fs::remove_dir_all(&man_tmp);
    for page in crate::man::write(&man_tmp)? {
        let name = file_name(&page)?;
        let section = name.rsplit('.').next().unwrap_or_default();
        tree.file(
            &format!("usr/share/man/man{section}/{name}.gz"),
            &gzip(&read(&page)?)?,
        )?;
    }
    fs::remove_dir_all(&man_tmp).ok();

    println!("package: completions (bash, zsh, fish)");
    for (shell, path) in [
        (
            Shell::Bash,
            "usr/share/bash-completion/completions/canaryctl",
        ),
        (Shell::Zsh, "usr/share/zsh/vendor-completions/_canaryctl"),
        (
            Shell::Fish,
            "usr/share/fish/vendor_completions.d/canaryctl.fish",
        ),
    ] {
        let mut text = vec![];
        canary_userspace::cli::canaryctl::completions(shell, &mut text);
        tree.file(path, &text)?;
    }

    println!("package: documentation");
    tree.file("usr/share/doc/canary/copyright", COPYRIGHT.as_bytes())?;
    tree.file(
        "usr/share/doc/canary/changelog.gz",
        &gzip(changelog().as_bytes())?,
    )?;
    tree.file(
        "usr/share/doc/canary/README.md",
        &read(&paths::workspace_root().join("README.md"))?,
    )?;

    let listed = tree.list()?;
    ensure!(
        listed == expected_paths(),
        "the package tree differs from expected_paths():\n  only in the tree: {:?}\n  only expected: {:?}",
        listed
            .iter()
            .filter(|p| !expected_paths().contains(p))
            .collect::<Vec<_>>(),
        expected_paths()
            .iter()
            .filter(|p| !listed.contains(p))
            .collect::<Vec<_>>(),
    );

    println!("package: control files (dpkg-shlibdeps for Depends)");
    let depends = depends(&root)?;
    let control = control(&depends, installed_size_kib(&root)?);
    tree.control("control", &control, 0o644)?;
    tree.control("conffiles", "/etc/canary/canary.toml\n", 0o644)?;
    tree.control("md5sums", &md5sums(&root)?, 0o644)?;
    tree.control("postinst", POSTINST, 0o755)?;
    tree.control("prerm", PRERM, 0o755)?;
    tree.control("postrm", POSTRM, 0o755)?;

    let deb = deb_path();
    cmd::run(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "--build"])
            .arg(&root)
            .arg(&deb),
    )?;
    println!("package: {}", deb.display());
    Ok(deb)
}

/// `packaging/canaryd.service` with canaryd where the package puts it; its
/// opening comment (how to install by hand) gives way to one line.
fn packaged_unit(packaging: &Path) -> Result<Vec<u8>> {
    let text = String::from_utf8(read(&packaging.join(UNIT))?).context("canaryd.service")?;
    let body = text
        .find("[Unit]")
        .map(|at| &text[at..])
        .context("packaging/canaryd.service has no [Unit] section")?;
    let exec = "ExecStart=/usr/local/bin/canaryd ";
    ensure!(
        body.matches(exec).count() == 1,
        "packaging/canaryd.service: expected one `{exec}` line to point at {SBIN_CANARYD}"
    );
    let body = body.replace(exec, &format!("ExecStart={SBIN_CANARYD} "));
    // The package has the man page the unit can point at.
    let description = body
        .lines()
        .find(|l| l.starts_with("Description="))
        .context("packaging/canaryd.service has no Description=")?;
    let body = body.replacen(
        description,
        &format!("{description}\nDocumentation=man:canaryd(8)"),
        1,
    );
    ensure!(
        !body.contains("/usr/local/"),
        "packaging/canaryd.service names /usr/local/ beyond ExecStart; the package has nothing there"
    );
    Ok(format!(
        "# canaryd: the canary traffic splitter on this host (Debian package canary).\n\
         # Configure /etc/canary/canary.toml, `canaryd --check`, then\n\
         #   systemctl enable --now canaryd\n\n{body}"
    )
    .into_bytes())
}

/// `shlibs:Depends` of both binaries from dpkg-shlibdeps, plus iproute2
/// (canaryd runs `ip` and `tc`).
fn depends(root: &Path) -> Result<String> {
    // dpkg-shlibdeps insists on a debian/control in its working directory.
    let work = out_dir().join("shlibdeps");
    fs::create_dir_all(work.join("debian"))?;
    fs::write(
        work.join("debian/control"),
        format!("Source: {NAME}\n\nPackage: {NAME}\nArchitecture: {ARCH}\n"),
    )?;
    let out = cmd::probe(
        Command::new("dpkg-shlibdeps")
            .current_dir(&work)
            .arg("-O")
            .arg(format!("-e{}", root.join("usr/sbin/canaryd").display()))
            .arg(format!("-e{}", root.join("usr/bin/canaryctl").display())),
    )?
    .context("dpkg-shlibdeps failed (is dpkg-dev installed?)")?;
    fs::remove_dir_all(&work).ok();
    let shlibs = out
        .lines()
        .find_map(|l| l.strip_prefix("shlibs:Depends="))
        .context("dpkg-shlibdeps printed no shlibs:Depends")?;
    Ok(format!("{shlibs}, iproute2"))
}

fn control(depends: &str, installed_size: u64) -> String {
    format!(
        "Package: {NAME}\n\
         Version: {VERSION}\n\
         Architecture: {ARCH}\n\
         Maintainer: {MAINTAINER}\n\
         Installed-Size: {installed_size}\n\
         Depends: {depends}\n\
         Section: net\n\
         Priority: optional\n\
         Description: in-kernel canary traffic splitter for model servers\n\
         {DESCRIPTION}"
    )
}

/// The long description: what it is, the kernel it needs (not a package
/// dependency: kernels come in many packages), and why it does not start.
const DESCRIPTION: &str = " canaryd splits the new connections to a service between a stable and a
 canary backend in XDP or TC, keeps established connections on the version
 they started on, measures each version's requests, errors and latency in
 the kernel, and steps a canary up while it is healthy or rolls it back.
 canaryctl sets weights and runs rollouts; metrics are for Prometheus, with
 a Grafana dashboard and alert rules in /usr/share/canary.
 .
 Needs Linux 6.6 or later with BTF, and a bpffs at /sys/fs/bpf.
 .
 The service is installed neither enabled nor started: edit
 /etc/canary/canary.toml, check it with canaryd --check, then run
 systemctl enable --now canaryd.
";

/// Installed-Size as dpkg-gencontrol counts it: KiB per file, rounded up,
/// and one per directory.
fn installed_size_kib(root: &Path) -> Result<u64> {
    let mut kib = 0;
    for entry in walk(root)? {
        let meta = fs::symlink_metadata(&entry)?;
        kib += if meta.is_dir() {
            1
        } else {
            meta.len().div_ceil(1024)
        };
    }
    Ok(kib)
}

fn md5sums(root: &Path) -> Result<String> {
    let files: Vec<String> = walk(root)?
        .into_iter()
        .filter(|p| p.is_file() && !p.starts_with(root.join("DEBIAN")))
        .map(|p| relative(root, &p))
        .collect::<Result<_>>()?;
    cmd::probe(Command::new("md5sum").current_dir(root).args(&files))?.context("md5sum failed")
}

/// A Debian changelog for this (native) version.
fn changelog() -> String {
    format!(
        "{NAME} ({VERSION}) unstable; urgency=medium\n\n  \
         * Package built by `cargo xtask package` from the canary workspace.\n\n \
         -- {MAINTAINER}  Mon, 01 Jan 2024 00:00:00 +0000\n"
    )
}

/// DEP-5, with the licences' full texts where Debian keeps them.
const COPYRIGHT: &str = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: canary

Files: *
Copyright: 2026 canary maintainers
License: MIT or Apache-2.0

License: MIT
 Permission is hereby granted, free of charge, to any person obtaining a
 copy of this software and associated documentation files (the
 \"Software\"), to deal in the Software without restriction, including
 without limitation the rights to use, copy, modify, merge, publish,
 distribute, sublicense, and/or sell copies of the Software, and to
 permit persons to whom the Software is furnished to do so, subject to
 the following conditions:
 .
 The above copyright notice and this permission notice shall be included
 in all copies or substantial portions of the Software.
 .
 THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND, EXPRESS
 OR IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF
 MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT.
 IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY
 CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT,
 TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE
 SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.

License: Apache-2.0
 On Debian systems, the full text of the Apache License, Version 2.0 is
 in /usr/share/common-licenses/Apache-2.0.
";

/// Neither enables nor starts canaryd on a first install: the shipped
/// config is an example naming eth0 and a made-up VIP, and must be edited
/// (and pass `canaryd --check`) first. As dh_installsystemd's
/// --no-enable --no-start, except that an upgrade restarts a running
/// canaryd (its pins keep the data path serving meanwhile).
const POSTINST: &str = r#"#!/bin/sh
set -e

if [ "$1" = "configure" ] || [ "$1" = "abort-upgrade" ] || [ "$1" = "abort-deconfigure" ] || [ "$1" = "abort-remove" ]; then
	# Not enabled on a first install; an operator's enable survives upgrades.
	if deb-systemd-helper debian-installed 'canaryd.service'; then
		if deb-systemd-helper --quiet was-enabled 'canaryd.service'; then
			deb-systemd-helper enable 'canaryd.service' >/dev/null || true
		fi
	fi
	deb-systemd-helper update-state 'canaryd.service' >/dev/null || true
fi

if [ "$1" = "configure" ] && [ -n "$2" ] && [ -d /run/systemd/system ]; then
	systemctl --system daemon-reload >/dev/null || true
	# Upgrade: a running canaryd restarts on the new binary; a stopped one stays stopped.
	deb-systemd-invoke try-restart 'canaryd.service' >/dev/null || true
fi

if [ "$1" = "configure" ] && [ -z "$2" ]; then
	echo "canary: canaryd is neither enabled nor started. Edit /etc/canary/canary.toml,"
	echo "canary: check it with 'canaryd --check', then 'systemctl enable --now canaryd'."
fi

exit 0
"#;

/// On removal, stop canaryd and take its programs out of the kernel: the
/// programs outlive the daemon (pins), and once the binary is gone nothing
/// would be left to detach them. An upgrade keeps both.
const PRERM: &str = r#"#!/bin/sh
set -e

if [ "$1" = "remove" ]; then
	if [ -d /run/systemd/system ]; then
		deb-systemd-invoke stop 'canaryd.service' >/dev/null || true
	fi
	# Detaching breaks established connections through the VIPs: that is
	# what removing canary means. Refused (and the removal goes on) while a
	# canaryd started by hand still runs on the same pins.
	canaryd --config /etc/canary/canary.toml --detach-all ||
		echo "canary: canaryd --detach-all failed; detach by hand (ip link, bpftool)" >&2
fi

exit 0
"#;

/// Purge removes the config, the state and the unit's systemd records.
const POSTRM: &str = r#"#!/bin/sh
set -e

if [ "$1" = "remove" ] && [ -d /run/systemd/system ]; then
	systemctl --system daemon-reload >/dev/null || true
fi

if [ "$1" = "purge" ]; then
	if [ -x "/usr/bin/deb-systemd-helper" ]; then
		deb-systemd-helper purge 'canaryd.service' >/dev/null || true
	fi
	rm -rf /etc/canary /var/lib/canary /run/canary
fi

exit 0
"#;

/// The package's file tree while it is built.
struct Tree {
    root: PathBuf,
}

impl Tree {
    fn path(&self, rel: &str) -> Result<PathBuf> {
        let p = self.root.join(rel);
        let parent = p.parent().context("no parent")?;
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        Ok(p)
    }

    fn file(&self, rel: &str, bytes: &[u8]) -> Result<()> {
        let p = self.path(rel)?;
        fs::write(&p, bytes).with_context(|| format!("writing {}", p.display()))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644))?;
        Ok(())
    }

    /// Copies a binary and strips it as dh_strip does (lintian warns on
    /// unstripped binaries; debug symbols would triple canaryd's size).
    fn binary(&self, from: &Path, rel: &str) -> Result<()> {
        ensure!(
            from.exists(),
            "{} is missing: build it first (cargo build --release -p canary-userspace --bins)",
            from.display()
        );
        let p = self.path(rel)?;
        fs::copy(from, &p).with_context(|| format!("copying {}", from.display()))?;
        cmd::run(
            Command::new("strip")
                .args(["--remove-section=.comment", "--remove-section=.note"])
                .arg("--strip-unneeded")
                .arg(&p),
        )?;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755))?;
        Ok(())
    }

    fn control(&self, name: &str, text: &str, mode: u32) -> Result<()> {
        let p = self.path(&format!("DEBIAN/{name}"))?;
        fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(mode))?;
        Ok(())
    }

    /// Every path under the root (outside DEBIAN), `/`-rooted, directories
    /// with a trailing `/`, sorted: the form of `expected_paths`.
    fn list(&self) -> Result<Vec<String>> {
        let mut out = vec![];
        for p in walk(&self.root)? {
            let rel = relative(&self.root, &p)?;
            if rel == "DEBIAN" || rel.starts_with("DEBIAN/") {
                continue;
            }
            if p.is_dir() {
                fs::set_permissions(&p, fs::Permissions::from_mode(0o755))?;
                out.push(format!("/{rel}/"));
            } else {
                out.push(format!("/{rel}"));
            }
        }
        out.sort();
        Ok(out)
    }
}

/// Every path under `dir`, depth first (not `dir` itself).
fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = vec![];
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for p in entries {
        let is_dir = fs::symlink_metadata(&p)?.is_dir();
        out.push(p.clone());
        if is_dir {
            out.extend(walk(&p)?);
        }
    }
    Ok(out)
}

fn relative(root: &Path, p: &Path) -> Result<String> {
    Ok(p.strip_prefix(root)?.to_string_lossy().into_owned())
}

fn read(p: &Path) -> Result<Vec<u8>> {
    fs::read(p).with_context(|| format!("reading {}", p.display()))
}

fn file_name(p: &Path) -> Result<String> {
    Ok(p.file_name()
        .context("no file name")?
        .to_string_lossy()
        .into_owned())
}

/// `gzip -9n`: no name or time in the header, so rebuilding gives the same
/// bytes (lintian checks for it).
fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut child = Command::new("gzip")
        .args(["-9n", "-c"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting gzip")?;
    let mut stdin = child.stdin.take().context("gzip stdin")?;
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().context("gzip")?;
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("gzip writer panicked"))??;
    if !out.status.success() {
        bail!("gzip failed ({})", out.status);
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_packaged_unit_runs_canaryd_from_usr_sbin() {
        let unit = packaged_unit(&paths::workspace_root().join("packaging")).unwrap();
        let unit = String::from_utf8(unit).unwrap();
        assert!(
            unit.contains("\nExecStart=/usr/sbin/canaryd --config /etc/canary/canary.toml\n"),
            "{unit}"
        );
        assert!(!unit.contains("/usr/local"), "{unit}");
    }

    #[test]
    fn expected_paths_has_a_man_page_per_canaryctl_subcommand() {
        let paths = expected_paths();
        assert!(paths.contains(&"/usr/share/man/man1/canaryctl.1.gz".to_string()));
        assert!(paths.contains(&"/usr/share/man/man1/canaryctl-status.1.gz".to_string()));
    }
}
