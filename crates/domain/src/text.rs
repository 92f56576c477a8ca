//! Free text from people (names, addresses, reasons), trimmed and bounded,
//! and other small helpers for checking what arrives from outside.

use std::error::Error;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("is required")]
    Empty,
    #[error("must be at most {0} characters")]
    TooLong(usize),
    #[error("must not contain control characters")]
    ControlCharacter,
}

/// `value` trimmed, if it is not empty, at most `max_chars` long and free of
/// control characters.
pub fn clean_text(value: &str, max_chars: usize) -> Result<String, TextError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(TextError::Empty);
    }
    if trimmed.chars().count() > max_chars {
        return Err(TextError::TooLong(max_chars));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(TextError::ControlCharacter);
    }
    Ok(trimmed.to_owned())
}

/// The size of a page a List method returns: `requested`, 0 meaning
/// `default`, at most `max`; why not, when it is negative.
pub fn page_size(requested: i32, default: usize, max: usize) -> Result<usize, &'static str> {
    match requested {
        size if size < 0 => Err("must not be negative"),
        0 => Ok(default),
        size => Ok((size as usize).min(max)),
    }
}

/// An opaque page token for a cursor (hex, so it survives any transport).
pub fn encode_page_token(cursor: &str) -> String {
    cursor.bytes().map(|byte| format!("{byte:02x}")).collect()
}

/// The cursor inside a token from [`encode_page_token`], if it is one.
pub fn decode_page_token(token: &str) -> Option<String> {
    if token.is_empty() || !token.len().is_multiple_of(2) || token.len() > 512 {
        return None;
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

/// Why a List method refuses a page token it did not make.
pub const NOT_A_PAGE_TOKEN: &str = "is not a token from an earlier page";

/// The id inside a token from [`encode_page_token`] of an id cursor, if it
/// is one.
pub fn decode_id_page_token(token: &str) -> Option<String> {
    decode_page_token(token).filter(|id| crate::Id::parse(id).is_ok())
}

/// An error and its causes, `outer: inner: innermost`.
pub fn cause_chain(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn cleans_and_bounds_text() {
        assert_eq!(clean_text("  Zhang Wei ", 10), Ok("Zhang Wei".to_owned()));
        assert_eq!(clean_text("   ", 10), Err(TextError::Empty));
        assert_eq!(clean_text("杭州市西湖区", 6), Ok("杭州市西湖区".to_owned()));
        assert_eq!(clean_text("杭州市西湖区", 5), Err(TextError::TooLong(5)));
        assert_eq!(clean_text("a\u{0}b", 10), Err(TextError::ControlCharacter));
    }

    #[test]
    fn a_page_size_defaults_and_is_capped_and_never_negative() {
        assert_eq!(page_size(0, 50, 200), Ok(50));
        assert_eq!(page_size(7, 50, 200), Ok(7));
        assert_eq!(page_size(500, 50, 200), Ok(200));
        assert_eq!(page_size(-1, 50, 200), Err("must not be negative"));
    }

    proptest! {
        #[test]
        fn page_tokens_round_trip(cursor in "\\PC{1,80}") {
            prop_assert_eq!(decode_page_token(&encode_page_token(&cursor)), Some(cursor));
        }

        #[test]
        fn garbage_tokens_do_not_panic(token in "\\PC{0,40}") {
            let _ = decode_page_token(&token);
        }
    }

    #[test]
    fn id_page_tokens_hold_ids_only() {
        let token = encode_page_token("prd_0190abc");
        assert_eq!(decode_id_page_token(&token), Some("prd_0190abc".to_owned()));
        for bad in [
            "",
            "zz",
            &encode_page_token("{bad}"),
            &encode_page_token("a b"),
        ] {
            assert_eq!(decode_id_page_token(bad), None, "{bad:?}");
        }
    }
}
