//! `canaryctl reload` as text: the counts, then every change old -> new.

use crate::api::Reloaded;

pub fn render(r: &Reloaded) -> String {
    let mut out = format!(
        "reloaded: {} added, {} updated, {} removed, {} unchanged\n",
        r.added.len(),
        r.updated.len(),
        r.removed.len(),
        r.unchanged.len()
    );
    if !r.changes.is_empty() {
        for c in &r.changes {
            out.push_str(&format!("  {c}\n"));
        }
        return out;
    }
    // A daemon from before `changes`: the names are all it says.
    for (what, names) in [
        ("added", &r.added),
        ("updated", &r.updated),
        ("removed", &r.removed),
    ] {
        if !names.is_empty() {
            out.push_str(&format!("  {what}: {}\n", names.join(", ")));
        }
    }
    if r.added.is_empty() && r.updated.is_empty() && r.removed.is_empty() {
        out.push_str("  nothing changed\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Change;

    #[test]
    fn changes_are_listed_old_to_new_and_old_daemons_still_read() {
        let mut r = Reloaded {
            updated: vec!["model".into()],
            ..Default::default()
        };
        assert_eq!(
            render(&r),
            "reloaded: 0 added, 1 updated, 0 removed, 0 unchanged\n  updated: model\n"
        );
        r.changes.push(Change {
            service: "model".into(),
            field: "weight".into(),
            old: Some("25.00% (runtime)".into()),
            new: Some("10.00% (config)".into()),
        });
        assert_eq!(
            render(&r),
            "reloaded: 0 added, 1 updated, 0 removed, 0 unchanged\n  ~ model: weight 25.00% (runtime) -> 10.00% (config)\n"
        );
        assert!(render(&Reloaded::default()).contains("nothing changed"));
    }
}
