//! Splitting a `--script` string into words the way a POSIX shell does, without a shell.
//!
//! Supported: blanks separate words; `'...'` keeps everything literally; `"..."` keeps
//! everything but lets a backslash escape `\`, `"`, `$`, `` ` `` and a newline; a backslash
//! outside quotes escapes the next character. Nothing is expanded: no variables, globs or
//! command substitution, because the program is run directly.

use std::fmt;

/// Why a string could not be split into words.
#[derive(Debug, PartialEq, Eq)]
pub enum SplitError {
    /// A `'` or `"` was opened and never closed.
    UnterminatedQuote(char),
    /// The string ends in a lone backslash.
    TrailingBackslash,
    /// Nothing but blanks.
    Empty,
}

impl fmt::Display for SplitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SplitError::UnterminatedQuote(q) => write!(f, "unterminated {q} quote"),
            SplitError::TrailingBackslash => f.write_str("ends in a lone backslash"),
            SplitError::Empty => f.write_str("no program given"),
        }
    }
}

/// Splits `s` into words; the first word is the program.
pub fn split(s: &str) -> Result<Vec<String>, SplitError> {
    let mut words = Vec::new();
    // `word` is Some while a word is open: `''` opens an empty word that must be kept.
    let mut word: Option<String> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err(SplitError::UnterminatedQuote('\'')),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some('\n') => {}
                            Some(c @ ('\\' | '"' | '$' | '`')) => w.push(c),
                            Some(c) => {
                                w.push('\\');
                                w.push(c);
                            }
                            None => return Err(SplitError::UnterminatedQuote('"')),
                        },
                        Some(c) => w.push(c),
                        None => return Err(SplitError::UnterminatedQuote('"')),
                    }
                }
            }
            '\\' => match chars.next() {
                // A backslash-newline is a line continuation: it joins, it does not separate.
                Some('\n') => {}
                Some(c) => word.get_or_insert_with(String::new).push(c),
                None => return Err(SplitError::TrailingBackslash),
            },
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    if let Some(w) = word {
        words.push(w);
    }
    if words.is_empty() {
        return Err(SplitError::Empty);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Vec<String> {
        split(s).unwrap()
    }

    #[test]
    fn blanks_separate_words() {
        assert_eq!(
            ok("  /bin/check.sh  --port\t80 "),
            ["/bin/check.sh", "--port", "80"]
        );
    }

    #[test]
    fn single_quotes_keep_everything() {
        assert_eq!(
            ok(r#"x --name 'a b' '$HOME\n'"#),
            ["x", "--name", "a b", r"$HOME\n"]
        );
    }

    #[test]
    fn double_quotes_allow_some_escapes() {
        assert_eq!(ok(r#"x "a \"b\" \$c \d""#), ["x", r#"a "b" $c \d"#]);
    }

    #[test]
    fn backslash_escapes_outside_quotes() {
        assert_eq!(ok(r"x a\ b \'"), ["x", "a b", "'"]);
    }

    #[test]
    fn empty_quotes_make_an_empty_word() {
        assert_eq!(ok("x '' \"\""), ["x", "", ""]);
    }

    #[test]
    fn adjacent_pieces_join_into_one_word() {
        assert_eq!(ok(r#"x a'b c'"d e"f"#), ["x", "ab cd ef"]);
    }

    #[test]
    fn nothing_is_expanded() {
        assert_eq!(ok("echo $HOME * `id`"), ["echo", "$HOME", "*", "`id`"]);
    }

    #[test]
    fn unterminated_quotes_are_errors() {
        assert_eq!(split("x 'a"), Err(SplitError::UnterminatedQuote('\'')));
        assert_eq!(split("x \"a"), Err(SplitError::UnterminatedQuote('"')));
        assert_eq!(split("x \"a\\"), Err(SplitError::UnterminatedQuote('"')));
    }

    #[test]
    fn trailing_backslash_is_an_error() {
        assert_eq!(split("x a\\"), Err(SplitError::TrailingBackslash));
    }

    #[test]
    fn blank_string_is_an_error() {
        assert_eq!(split(""), Err(SplitError::Empty));
        assert_eq!(split(" \t "), Err(SplitError::Empty));
    }
}
