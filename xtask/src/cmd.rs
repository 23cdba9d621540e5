//! The one way xtask runs an external command: print it, run it, and on
//! failure say which command it was and how it ended.

use std::{
    borrow::Cow,
    io::ErrorKind,
    process::{Command, Output, Stdio},
};

use anyhow::{Context, Result, bail};

/// Runs `cmd` with its output streamed to ours; fails unless it exits 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    let line = announce(cmd);
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("cannot start `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Runs `cmd` to ask a question: its stdout if it ran and exited 0, `None`
/// if it is not installed or failed (stderr is swallowed: failing is an answer).
pub fn probe(cmd: &mut Command) -> Result<Option<String>> {
    let line = announce(cmd);
    match cmd.stdin(Stdio::null()).stderr(Stdio::null()).output() {
        Ok(Output { status, stdout, .. }) if status.success() => {
            Ok(Some(String::from_utf8_lossy(&stdout).into_owned()))
        }
        Ok(_) => Ok(None),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot start `{line}`")),
    }
}

/// Prints the command line as a shell would take it, and returns it.
fn announce(cmd: &Command) -> String {
    let env = cmd.get_envs().filter_map(|(k, v)| {
        v.map(|v| format!("{}={}", k.to_string_lossy(), quote(&v.to_string_lossy())))
    });
    let words = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|w| quote(&w.to_string_lossy()).into_owned());
    let line = env.chain(words).collect::<Vec<_>>().join(" ");
    println!("  $ {line}");
    line
}

fn quote(word: &str) -> Cow<'_, str> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        Cow::Borrowed(word)
    } else {
        Cow::Owned(format!("'{}'", word.replace('\'', r"'\''")))
    }
}
