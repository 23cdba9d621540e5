//! Sections of docs/BENCHMARKS.md that other commands measured (the fleet
//! simulation, `cargo run --release -p tests --bin fleet-sim`): each sits
//! between `<!-- kept: NAME -->` and `<!-- /kept: NAME -->`, and a bench
//! run that rewrites the page carries them over, before "## Findings",
//! so its figures stay beside the command that measured them.

const OPEN: &str = "<!-- kept: ";
const CLOSE: &str = "<!-- /kept: ";

/// `new` with every kept section of `old` put back.
pub fn carry_over(old: &str, new: String) -> String {
    let sections = kept(old);
    if sections.is_empty() {
        return new;
    }
    let block: String = sections.iter().map(|s| format!("{s}\n\n")).collect();
    match new.find("\n## Findings") {
        Some(at) => format!("{}\n{block}{}", &new[..at], &new[at + 1..]),
        None => format!("{new}\n{block}"),
    }
}

/// The kept sections of `page`, markers included, in order.
fn kept(page: &str) -> Vec<&str> {
    let mut out = vec![];
    let mut rest = page;
    while let Some(start) = rest.find(OPEN) {
        let from = &rest[start..];
        let name_end = from[OPEN.len()..].find(" -->").map(|e| e + OPEN.len());
        let Some(name_end) = name_end else { break };
        let close = format!("{CLOSE}{} -->", &from[OPEN.len()..name_end]);
        let Some(end) = from.find(&close) else { break };
        out.push(&from[..end + close.len()]);
        rest = &from[end + close.len()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_section_goes_back_before_the_findings() {
        let old = "# B\n\nold text\n\n<!-- kept: fleet -->\n## Fleet\n1 2 3\n<!-- /kept: fleet -->\n\n## Findings\nold\n";
        let new = "# B\n\nnew text\n\n## Findings\nnew\n".to_owned();
        let out = carry_over(old, new);
        assert_eq!(
            out,
            "# B\n\nnew text\n\n<!-- kept: fleet -->\n## Fleet\n1 2 3\n<!-- /kept: fleet -->\n\n## Findings\nnew\n"
        );
        // Nothing to keep: the new page as it is.
        assert_eq!(carry_over("# B\n", "# C\n".to_owned()), "# C\n");
        // An unclosed marker keeps nothing rather than half a section.
        assert_eq!(
            carry_over("<!-- kept: x -->\nhalf", "# C\n".to_owned()),
            "# C\n"
        );
    }
}
