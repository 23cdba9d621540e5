//! The Debian package (`cargo xtask package`): its exact file list, lintian
//! without errors, and an install/purge cycle on this machine: the files
//! appear, the installed canaryd checks a config, the service is neither
//! enabled nor started, and a purge leaves nothing (config and state dirs
//! included). The package is purged even when an assertion fails.

use std::{
    path::Path,
    process::{Command, Output},
    time::Instant,
};

use xtask::package;

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e} (cargo xtask setup installs it)"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn installed() -> bool {
    let out = run("dpkg-query", &["-W", "-f=${Status}", package::NAME]);
    out.status.success() && String::from_utf8_lossy(&out.stdout).contains("ok installed")
}

/// Purges the package when dropped, so a failing assertion does not leave
/// it installed on the test machine.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let out = run("dpkg", &["--purge", package::NAME]);
        if !out.status.success() {
            eprintln!("dpkg --purge {} failed: {}", package::NAME, text(&out));
        }
    }
}

/// A process running the installed canaryd, if any.
fn canaryd_processes() -> Vec<String> {
    let mut pids = vec![];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(exe) = std::fs::read_link(entry.path().join("exe"))
            && exe == Path::new("/usr/sbin/canaryd")
        {
            pids.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    pids
}

#[test]
fn package_has_its_files_passes_lintian_and_installs_and_purges_cleanly() {
    tests::assert_root();
    let start = Instant::now();
    // Packed from the binaries this test run was built with (the debug
    // profile, stripped like release ones): what is checked is the
    // package's layout, metadata and scripts, which `cargo xtask package`
    // lays out the same way around its release build; a release build of
    // its own would add minutes to every test run.
    let bins = std::env::current_exe().unwrap();
    let bin_dir = bins.parent().and_then(|d| d.parent()).unwrap();
    let deb = package::assemble(bin_dir).unwrap();
    println!(
        "package: built {} in {:.1}s",
        deb.display(),
        start.elapsed().as_secs_f64()
    );
    let deb = deb.to_str().unwrap();

    // The exact file list, with owners and modes.
    let listing = run("dpkg-deb", &["-c", deb]);
    assert!(listing.status.success(), "{}", text(&listing));
    let listing = String::from_utf8(listing.stdout).unwrap();
    let mut paths = vec![];
    for line in listing.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (mode, owner, path) = (fields[0], fields[1], *fields.last().unwrap());
        assert_eq!(owner, "root/root", "{line}");
        let path = path.strip_prefix('.').unwrap();
        let want = match path {
            "/" => continue,
            "/usr/sbin/canaryd" | "/usr/bin/canaryctl" => "-rwxr-xr-x",
            p if p.ends_with('/') => "drwxr-xr-x",
            _ => "-rw-r--r--",
        };
        assert_eq!(mode, want, "{line}");
        paths.push(path.to_owned());
    }
    paths.sort();
    assert_eq!(paths, package::expected_paths(), "dpkg-deb -c:\n{listing}");
    let conffiles = run("dpkg-deb", &["--info", deb, "conffiles"]);
    assert_eq!(text(&conffiles), "/etc/canary/canary.toml\n");
    let control = text(&run("dpkg-deb", &["--field", deb]));
    println!("{control}");
    assert!(control.contains("Depends: libc6"), "{control}");
    assert!(control.contains("iproute2"), "{control}");
    assert!(control.contains("Linux 6.6 or later"), "{control}");

    // lintian: errors fail the test; warnings are printed.
    let lintian_start = Instant::now();
    let lint = run("lintian", &["--fail-on", "error", "--display-info", deb]);
    println!(
        "lintian ({:.1}s):\n{}",
        lintian_start.elapsed().as_secs_f64(),
        text(&lint)
    );
    assert!(
        lint.status.success(),
        "lintian found errors:\n{}",
        text(&lint)
    );
    assert!(
        !text(&lint).lines().any(|l| l.starts_with("E:")),
        "{}",
        text(&lint)
    );

    // Install, look, purge. One at a time with the other root scenarios.
    let _turn = tests::root_scenario();
    assert!(
        !installed(),
        "{} is already installed on this machine: the test installs and purges its own; \
         `dpkg --purge {}` first (it removes /etc/canary)",
        package::NAME,
        package::NAME
    );
    let purge = Installed;
    let install = run("dpkg", &["-i", deb]);
    assert!(install.status.success(), "dpkg -i: {}", text(&install));
    println!("dpkg -i:\n{}", text(&install));
    assert!(installed());
    assert!(
        text(&install).contains("canaryd is neither enabled nor started"),
        "{}",
        text(&install)
    );
    for path in package::expected_paths() {
        assert!(Path::new(&path).exists(), "{path} missing after dpkg -i");
    }
    let version = run("/usr/sbin/canaryd", &["--version"]);
    assert!(
        text(&version).contains(package::VERSION),
        "{}",
        text(&version)
    );
    let version = run("/usr/bin/canaryctl", &["--version"]);
    assert!(
        text(&version).contains(package::VERSION),
        "{}",
        text(&version)
    );
    // The installed config, on an interface this machine has, passes the
    // installed canaryd's --check.
    let shipped = std::fs::read_to_string("/etc/canary/canary.toml").unwrap();
    let on_lo = shipped.replace("interfaces = [\"eth0\"]", "interfaces = [\"lo\"]");
    assert_ne!(on_lo, shipped, "the shipped config no longer names eth0");
    let dir = std::env::temp_dir().join(format!("canary-package-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("canary.toml");
    std::fs::write(&config, on_lo).unwrap();
    let check = run(
        "/usr/sbin/canaryd",
        &["--config", config.to_str().unwrap(), "--check"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(check.status.success(), "{}", text(&check));
    // Not started, not enabled.
    assert_eq!(canaryd_processes(), Vec::<String>::new());
    assert!(!Path::new("/run/canary/canary.sock").exists());
    assert!(
        !Path::new("/etc/systemd/system/multi-user.target.wants/canaryd.service").exists(),
        "the package enabled canaryd"
    );

    // Purge: every file goes, the config and state dirs too.
    drop(purge);
    assert!(!installed(), "still installed after dpkg --purge");
    for path in package::expected_paths() {
        let gone = !Path::new(&path).exists() || (path.ends_with('/') && is_shared_dir(&path));
        assert!(gone, "{path} still there after dpkg --purge");
    }
    for dir in ["/etc/canary", "/var/lib/canary", "/usr/share/canary"] {
        assert!(!Path::new(dir).exists(), "{dir} still there after purge");
    }
    assert!(
        !Path::new("/var/lib/systemd/deb-systemd-helper-enabled/canaryd.service.dsh-also").exists(),
        "deb-systemd-helper's record of canaryd.service survived the purge"
    );
    println!("package test: {:.1}s in all", start.elapsed().as_secs_f64());
}

/// A directory other packages own too (/usr/share/man/man1/, ...): dpkg
/// leaves it after the purge, rightly.
fn is_shared_dir(path: &str) -> bool {
    let out = run("dpkg-query", &["-S", path.trim_end_matches('/')]);
    out.status.success()
}
