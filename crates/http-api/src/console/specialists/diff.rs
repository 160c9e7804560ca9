//! A line diff of two prompts (longest common subsequence), bounded so that no pair of texts
//! can make it slow or large: prompts are capped in size, and past a cell budget the changed
//! middle is shown as removed-then-added instead of aligned line by line.

/// One line of a diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DiffLine<'a> {
    /// In both texts.
    Same(&'a str),
    /// Only in the old text.
    Removed(&'a str),
    /// Only in the new text.
    Added(&'a str),
}

/// The most cells of the LCS table computed (old lines × new lines after trimming the common
/// start and end): 4 MB of `u32`, far more than two edits of a capped prompt need.
const MAX_TABLE_CELLS: usize = 1_000_000;

/// The lines of `new` against those of `old`: unchanged, removed and added, in reading order.
pub(crate) fn line_diff<'a>(old: &'a str, new: &'a str) -> Vec<DiffLine<'a>> {
    let old: Vec<&str> = old.lines().collect();
    let new: Vec<&str> = new.lines().collect();
    let prefix = old.iter().zip(&new).take_while(|(a, b)| a == b).count();
    let suffix = old[prefix..]
        .iter()
        .rev()
        .zip(new[prefix..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let old_middle = &old[prefix..old.len() - suffix];
    let new_middle = &new[prefix..new.len() - suffix];

    let mut lines: Vec<DiffLine<'a>> = old[..prefix].iter().map(|l| DiffLine::Same(l)).collect();
    if old_middle.len().saturating_mul(new_middle.len()) > MAX_TABLE_CELLS {
        lines.extend(old_middle.iter().map(|l| DiffLine::Removed(l)));
        lines.extend(new_middle.iter().map(|l| DiffLine::Added(l)));
    } else {
        lines.extend(aligned(old_middle, new_middle));
    }
    lines.extend(old[old.len() - suffix..].iter().map(|l| DiffLine::Same(l)));
    lines
}

/// The classic dynamic-programming LCS, walked forwards: `table[i][j]` is the length of the
/// longest common subsequence of `old[i..]` and `new[j..]`.
fn aligned<'a>(old: &[&'a str], new: &[&'a str]) -> Vec<DiffLine<'a>> {
    let width = new.len() + 1;
    let mut table = vec![0u32; (old.len() + 1) * width];
    for i in (0..old.len()).rev() {
        for j in (0..new.len()).rev() {
            table[i * width + j] = if old[i] == new[j] {
                table[(i + 1) * width + j + 1] + 1
            } else {
                table[(i + 1) * width + j].max(table[i * width + j + 1])
            };
        }
    }
    let mut lines = Vec::with_capacity(old.len() + new.len());
    let (mut i, mut j) = (0, 0);
    while i < old.len() && j < new.len() {
        if old[i] == new[j] {
            lines.push(DiffLine::Same(old[i]));
            i += 1;
            j += 1;
        } else if table[(i + 1) * width + j] >= table[i * width + j + 1] {
            lines.push(DiffLine::Removed(old[i]));
            i += 1;
        } else {
            lines.push(DiffLine::Added(new[j]));
            j += 1;
        }
    }
    lines.extend(old[i..].iter().map(|l| DiffLine::Removed(l)));
    lines.extend(new[j..].iter().map(|l| DiffLine::Added(l)));
    lines
}

#[cfg(test)]
mod tests {
    use super::DiffLine::{Added, Removed, Same};
    use super::*;

    #[test]
    fn identical_texts_are_all_unchanged() {
        assert_eq!(line_diff("a\nb", "a\nb"), [Same("a"), Same("b")]);
        assert_eq!(line_diff("", ""), []);
    }

    #[test]
    fn a_changed_line_is_removed_then_added_between_unchanged_ones() {
        assert_eq!(
            line_diff(
                "You help.\nBe brief.\nCite sources.",
                "You help.\nBe thorough.\nCite sources."
            ),
            [
                Same("You help."),
                Removed("Be brief."),
                Added("Be thorough."),
                Same("Cite sources.")
            ]
        );
    }

    #[test]
    fn insertions_and_deletions_keep_the_longest_common_lines() {
        assert_eq!(
            line_diff("a\nb\nc\nd", "b\nx\nd\ne"),
            [
                Removed("a"),
                Same("b"),
                Removed("c"),
                Added("x"),
                Same("d"),
                Added("e")
            ]
        );
        assert_eq!(line_diff("", "new"), [Added("new")]);
        assert_eq!(line_diff("old", ""), [Removed("old")]);
    }

    #[test]
    fn every_line_of_both_texts_appears_once_in_order() {
        let old = "1\n2\n3\n2\n1\n4";
        let new = "2\n1\n3\n3\n4\n5";
        let diff = line_diff(old, new);
        let kept_old: Vec<&str> = diff
            .iter()
            .filter_map(|l| match l {
                Same(t) | Removed(t) => Some(*t),
                Added(_) => None,
            })
            .collect();
        let kept_new: Vec<&str> = diff
            .iter()
            .filter_map(|l| match l {
                Same(t) | Added(t) => Some(*t),
                Removed(_) => None,
            })
            .collect();
        assert_eq!(kept_old, old.lines().collect::<Vec<_>>());
        assert_eq!(kept_new, new.lines().collect::<Vec<_>>());
        let same = diff.iter().filter(|l| matches!(l, Same(_))).count();
        assert_eq!(same, 3, "an LCS of these two has three lines (2, 3, 4)");
    }

    #[test]
    fn texts_too_large_to_align_are_shown_removed_then_added() {
        let old: String = (0..1500).map(|n| format!("old {n}\n")).collect();
        let new: String = (0..1500).map(|n| format!("new {n}\n")).collect();
        let old = format!("same start\n{old}same end");
        let new = format!("same start\n{new}same end");
        let diff = line_diff(&old, &new);
        assert_eq!(diff.len(), 3002);
        assert_eq!(diff[0], Same("same start"));
        assert_eq!(diff[1], Removed("old 0"));
        assert_eq!(diff[1501], Added("new 0"));
        assert_eq!(diff[3001], Same("same end"));
    }
}
