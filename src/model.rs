//! Rules every domain shares, without IO: the text rule for names, titles and free text.

use crate::error::{Error, Result};

/// Checks a text field: trimmed, `min..=max` characters, no control characters but newlines/tabs.
pub fn text(raw: &str, field: &str, min: usize, max: usize) -> Result<String> {
    let value = raw.trim();
    let length = value.chars().count();
    if length < min || length > max {
        return Err(Error::bad_input(
            field,
            format!("{field} has {min} to {max} characters"),
        ));
    }
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
        assert_eq!(optional_text(None, "d", 10).unwrap(), None);
    }
}
