//! Unicode rules for the text people type into the catalogue: which characters may appear in
//! it, and when two names are the same name.
//!
//! Invisible characters are how a name is spoofed (`De\u{200B}mo` beside `Demo`), how text is
//! reordered on screen (bidi overrides, "Trojan Source") and how instructions are hidden in a
//! prompt (Unicode tag characters, "ASCII smuggling"). Control characters forge log lines and
//! terminal output. So they are refused at the door rather than escaped at every exit.

use icu_casemap::CaseMapper;
use icu_normalizer::ComposingNormalizerBorrowed;
use icu_properties::props::{DefaultIgnorableCodePoint, GeneralCategory};
use icu_properties::{CodePointMapData, CodePointSetData};

/// How much a field may hold beyond visible characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TextKind {
    /// A label such as a name or a URL: visible characters and plain spaces only.
    Label,
    /// One line of prose (a description): also the zero-width joiner and non-joiner, which
    /// emoji sequences and scripts such as Persian and the Indic ones need.
    Line,
    /// Paragraphs (a system prompt): also tabs and line breaks (`\n`, or `\r\n`).
    Paragraphs,
}

const ZERO_WIDTH_NON_JOINER: char = '\u{200C}';
const ZERO_WIDTH_JOINER: char = '\u{200D}';

/// The first character `text` may not hold as `kind`, with its position (in characters,
/// counting from 1), or `None` when every character is allowed.
pub(crate) fn first_hidden_char(text: &str, kind: TextKind) -> Option<(usize, char)> {
    let categories = CodePointMapData::<GeneralCategory>::new();
    let ignorable = CodePointSetData::new::<DefaultIgnorableCodePoint>();
    let mut chars = text.chars().enumerate().peekable();
    while let Some((index, c)) = chars.next() {
        let allowed = match categories.get(c) {
            GeneralCategory::Control => {
                kind == TextKind::Paragraphs
                    && (matches!(c, '\n' | '\t')
                        || (c == '\r' && chars.peek().is_some_and(|(_, next)| *next == '\n')))
            }
            GeneralCategory::Format => {
                kind != TextKind::Label && matches!(c, ZERO_WIDTH_NON_JOINER | ZERO_WIDTH_JOINER)
            }
            GeneralCategory::LineSeparator | GeneralCategory::ParagraphSeparator => false,
            // Invisible but not a format character: variation selectors, the combining grapheme
            // joiner, Hangul fillers. They make two equal-looking labels differ.
            _ => kind != TextKind::Label || !ignorable.contains(c),
        };
        if !allowed {
            return Some((index + 1, c));
        }
    }
    None
}

/// The message for a field holding `c` at `position`.
pub(crate) fn hidden_char_message(position: usize, c: char, kind: TextKind) -> String {
    let allowed = match kind {
        TextKind::Label => "",
        TextKind::Line => " (the zero-width joiners U+200C and U+200D are allowed)",
        TextKind::Paragraphs => {
            " (tabs, line breaks and the zero-width joiners U+200C and U+200D are allowed)"
        }
    };
    format!(
        "must not contain control, formatting or invisible characters{allowed}: found U+{:04X} \
         at character {position}",
        u32::from(c)
    )
}

/// The form in which two specialist names are compared for uniqueness: Unicode compatibility
/// normalisation (NFKC, so full-width `ＤＥＭＯ` and the ligature `ﬁ` read as what they show)
/// and full case folding (so `STRASSE` and `Straße` are one name), normalised again because
/// folding can undo normalisation (Unicode's compatibility caseless match, UAX #44/D146).
///
/// ```
/// use core_domain::comparable_name;
///
/// assert_eq!(comparable_name("STRASSE"), comparable_name("Straße"));
/// assert_eq!(comparable_name("ＤＥＭＯ"), comparable_name("demo"));
/// assert_ne!(comparable_name("Demo"), comparable_name("Demo 2"));
/// ```
pub fn comparable_name(name: &str) -> String {
    let nfkc = ComposingNormalizerBorrowed::new_nfkc();
    let folded = CaseMapper::new()
        .fold_string(&nfkc.normalize(name.trim()))
        .into_owned();
    nfkc.normalize(&folded).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_refuse_controls_format_and_invisible_characters() {
        for (text, position) in [
            ("De\u{200B}mo", 3),  // zero-width space
            ("Demo\u{0}", 5),     // NUL
            ("\u{202E}omeD", 1),  // right-to-left override
            ("Demo\u{2066}", 5),  // left-to-right isolate
            ("Demo\u{200D}", 5),  // zero-width joiner
            ("Demo\u{FE0F}", 5),  // variation selector
            ("Demo\u{E0041}", 5), // tag character
            ("Demo\u{2028}x", 5), // line separator
            ("Demo\u{3164}", 5),  // Hangul filler
            ("A\u{34F}B", 2),     // combining grapheme joiner
            ("Tab\there", 4),
            ("Line\nbreak", 5),
            ("Esc\u{1B}[31m", 4),
        ] {
            assert_eq!(
                first_hidden_char(text, TextKind::Label).map(|(at, _)| at),
                Some(position),
                "{text:?}"
            );
        }
        for ok in [
            "Demo",
            "Straße",
            "Financial Analyst (Copy 2)",
            "日本語",
            "Ελληνικά",
            "🤖 Bot",
        ] {
            assert_eq!(first_hidden_char(ok, TextKind::Label), None, "{ok}");
        }
    }

    #[test]
    fn prose_keeps_joiners_and_paragraphs_keep_line_breaks() {
        let persian = "می\u{200C}خواهم";
        let family = "👨\u{200D}👩\u{200D}👧";
        for text in [persian, family] {
            assert_eq!(first_hidden_char(text, TextKind::Line), None);
            assert_eq!(first_hidden_char(text, TextKind::Paragraphs), None);
        }
        let prompt = "Rules:\n\t1. Be brief.\r\n\t2. Be kind.";
        assert_eq!(first_hidden_char(prompt, TextKind::Paragraphs), None);
        assert_eq!(first_hidden_char(prompt, TextKind::Line), Some((7, '\n')));
        for (text, position) in [
            ("Be kind.\u{E0049}\u{E0047}", 9), // hidden tag-character instructions
            ("a\rb", 2),                       // a lone carriage return overwrites a line
            ("\u{202E}txt.exe", 1),
            ("bell\u{7}", 5),
        ] {
            assert_eq!(
                first_hidden_char(text, TextKind::Paragraphs).map(|(at, _)| at),
                Some(position),
                "{text:?}"
            );
        }
    }

    #[test]
    fn names_compare_after_compatibility_normalisation_and_full_case_folding() {
        for (a, b) in [
            ("STRASSE", "Straße"),
            ("ＤＥＭＯ", "demo"),
            ("ﬁle", "FILE"),
            ("Ω", "ω"),
            ("ΣΊΣΥΦΟΣ", "σίσυφος"),
            ("e\u{301}", "É"),
            (" Demo ", "demo"),
        ] {
            assert_eq!(comparable_name(a), comparable_name(b), "{a} vs {b}");
        }
        assert_ne!(comparable_name("Demo"), comparable_name("Demo2"));
    }
}
