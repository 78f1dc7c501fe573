//! Rules every domain shares, without IO: the text rule for names and titles (one line, nothing
//! that can disguise it) and for free text (descriptions, bios, reasons), and the range of instants
//! and dates the API takes.
//!
//! Free text refuses control characters but newlines and tabs (NUL among them, which PostgreSQL
//! cannot store in text). Names and titles (display names, event, slot and game titles, drink
//! names) refuse every control character, every format character (General Category Cf:
//! bidirectional controls such as U+202E, which turn text around on screen, zero-width spaces and
//! joiners, the soft hyphen, the BOM; tag characters only inside a regional flag, which needs
//! them), line and paragraph separators, letters that render blank (Hangul fillers, the blank
//! Braille pattern), stacks of more than [`MAX_COMBINING`] combining marks on one character and
//! more than one variation selector.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

use crate::error::{Error, Result};

/// The years an instant or date given to the API may fall in. The `DateTime` scalar reads years of
/// up to six digits and a sign; beyond four, arithmetic on them (an end a day later, a slot of an
/// hour) can overflow chrono's range, SQLite's text ordering of stored instants breaks, and
/// PostgreSQL refuses years before 4713 BC.
pub const YEARS: std::ops::RangeInclusive<i32> = 1..=9999;

/// Checks an instant given to the API: its year is in [`YEARS`].
pub fn instant(at: DateTime<Utc>, field: &str) -> Result<DateTime<Utc>> {
    date(at.date_naive(), field)?;
    Ok(at)
}

/// Checks a date given to the API: its year is in [`YEARS`].
pub fn date(day: NaiveDate, field: &str) -> Result<NaiveDate> {
    if YEARS.contains(&day.year()) {
        Ok(day)
    } else {
        Err(Error::bad_input(
            field,
            format!(
                "instants and dates lie in the years {} to {}",
                YEARS.start(),
                YEARS.end()
            ),
        ))
    }
}

/// Most combining marks a name may stack on one character (real scripts need two or three).
pub const MAX_COMBINING: usize = 3;

/// Checks a name or title: trimmed, `min..=max` characters, one line, nothing that disguises it.
pub fn name(raw: &str, field: &str, min: usize, max: usize) -> Result<String> {
    let value = bounded(raw, field, min, max)?;
    if value.chars().any(char::is_control) {
        return Err(Error::bad_input(
            field,
            format!("{field} has control characters"),
        ));
    }
    if value.chars().any(is_invisible) || !tags_only_in_flags(value) {
        return Err(Error::bad_input(
            field,
            format!("{field} has invisible or direction-changing characters"),
        ));
    }
    let (mut stacked, mut selectors) = (0, 0);
    for (i, c) in value.chars().enumerate() {
        stacked = if is_combining(c) { stacked + 1 } else { 0 };
        // A variation selector picks the look of the character before it: one, after something.
        selectors = if is_variation_selector(c) {
            selectors + 1
        } else {
            0
        };
        if stacked > MAX_COMBINING || selectors > 1 || (i == 0 && selectors == 1) {
            return Err(Error::bad_input(
                field,
                format!("{field} stacks too many combining marks"),
            ));
        }
    }
    Ok(value.to_owned())
}

/// The black flag that regional flags (England, Scotland, Wales) start with.
const BLACK_FLAG: char = '\u{1F3F4}';
/// The tag that ends a regional flag.
const CANCEL_TAG: char = '\u{E007F}';

/// Tag characters (format characters that draw nothing on their own).
fn is_tag(c: char) -> bool {
    matches!(c, '\u{E0020}'..='\u{E007F}')
}

/// Whether every tag character stands in a regional flag: right after a black flag, in a run that
/// ends with the cancel tag. Anywhere else tags draw nothing and would let "ann" and "ann" plus
/// hidden tags pass for one another.
fn tags_only_in_flags(value: &str) -> bool {
    let (mut previous, mut in_flag) = (None, false);
    for c in value.chars() {
        if is_tag(c) {
            if !in_flag && previous != Some(BLACK_FLAG) {
                return false;
            }
            in_flag = c != CANCEL_TAG;
        } else if in_flag {
            return false;
        }
        previous = Some(c);
    }
    !in_flag
}

/// Variation selectors (text or emoji look, ideographic variants).
fn is_variation_selector(c: char) -> bool {
    matches!(c, '\u{FE00}'..='\u{FE0F}' | '\u{E0100}'..='\u{E01EF}')
}

fn bounded<'a>(raw: &'a str, field: &str, min: usize, max: usize) -> Result<&'a str> {
    let value = raw.trim();
    let length = value.chars().count();
    if length < min || length > max {
        return Err(Error::bad_input(
            field,
            format!("{field} has {min} to {max} characters"),
        ));
    }
    Ok(value)
}

/// Characters that draw nothing or change how the rest is drawn: format characters (General
/// Category Cf: zero-width spaces and joiners, the soft hyphen, the byte-order mark, every
/// bidirectional control), line and paragraph separators (Zl, Zp), and letters that render blank
/// (the Hangul fillers, the blank Braille pattern). Tag characters (Cf too) are judged apart, by
/// [`tags_only_in_flags`].
fn is_invisible(c: char) -> bool {
    let invisible_category = matches!(
        c.general_category(),
        GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    );
    let blank = matches!(
        c,
        '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}' | '\u{2800}'
    );
    (invisible_category && !is_tag(c)) || blank
}

/// Combining diacritical marks (the blocks that "zalgo" text stacks).
fn is_combining(c: char) -> bool {
    matches!(
        c,
        '\u{0300}'..='\u{036F}'
            | '\u{1AB0}'..='\u{1AFF}'
            | '\u{1DC0}'..='\u{1DFF}'
            | '\u{20D0}'..='\u{20FF}'
            | '\u{FE20}'..='\u{FE2F}'
    )
}

/// Checks a free text: trimmed, `min..=max` characters, no control characters but newlines/tabs.
pub fn text(raw: &str, field: &str, min: usize, max: usize) -> Result<String> {
    let value = bounded(raw, field, min, max)?;
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(Error::bad_input(
            field,
            format!("{field} has control characters"),
        ));
    }
    Ok(value.to_owned())
}

/// An optional text: empty means none.
pub fn optional_text(raw: Option<&str>, field: &str, max: usize) -> Result<Option<String>> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(value) => text(value, field, 1, max).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_trimmed_bounded_and_free_of_control_characters() {
        assert!(text("  ", "input.title", 1, 10).is_err());
        assert!(text("a\u{0}b", "input.title", 1, 10).is_err());
        assert!(text("abcdefghijk", "input.title", 1, 10).is_err());
        assert_eq!(text(" ok\nfine ", "t", 1, 10).unwrap(), "ok\nfine");
        assert_eq!(optional_text(Some("  "), "d", 10).unwrap(), None);
        assert!(
            text("a\u{202E}b", "d", 1, 10).is_ok(),
            "free text may quote anything printable"
        );
    }

    #[test]
    fn names_refuse_what_disguises_them() {
        assert_eq!(name(" Ada ", "n", 1, 10).unwrap(), "Ada");
        assert_eq!(name("Zoë Ñúñez", "n", 1, 20).unwrap(), "Zoë Ñúñez");
        assert_eq!(
            name("e\u{301}\u{302}", "n", 1, 10).unwrap(),
            "e\u{301}\u{302}"
        );
        for fine in [
            "山田 花子",
            "\u{D55C}\u{AE00}",
            "Love \u{2764}\u{FE0F}",
            "\u{1F3F4}\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F} Scot",
            "देवनागरी",
        ] {
            assert_eq!(name(fine, "n", 1, 30).unwrap(), fine, "{fine:?}");
        }
        for bad in [
            "two\nlines",
            "tab\there",
            "gpj.\u{202E}exe",
            "ad\u{200B}min",
            "\u{FEFF}bom",
            "\u{2066}isolate",
            "z\u{301}\u{302}\u{303}\u{304}",
            "soft\u{AD}hyphen",
            "line\u{2028}separator",
            "para\u{2029}graph",
            "\u{3164}",
            "blank\u{115F}\u{1160}",
            "\u{2800}\u{2800}",
            "half\u{FFA0}width",
            "mongolian\u{180E}vowel",
            "\u{E0001}language tag",
            "arabic\u{061C}mark",
            "ann\u{E0061}\u{E0062}",
            "ann\u{1F3F4}\u{E0067}\u{E0062}",
            "\u{1F3F4}\u{E0067}\u{E007F}\u{E0067}\u{E007F}",
            "ann\u{FE0F}\u{FE0F}",
            "\u{FE0F}ann",
        ] {
            match name(bad, "input.title", 1, 40) {
                Err(Error::BadInput { field, .. }) => assert_eq!(field, "input.title", "{bad:?}"),
                other => panic!("{bad:?} must be refused, got {other:?}"),
            }
        }
        assert_eq!(optional_text(None, "d", 10).unwrap(), None);
    }
}
