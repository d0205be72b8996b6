//! Parsing of deb822 control data (Packages indexes, Release files, control
//! files): paragraphs of `Field: value` lines separated by blank lines, with
//! continuation lines starting with a space or tab.
//!
//! Packages indexes are tens of megabytes, so paragraphs borrow from the
//! input instead of copying every field.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("line {line}: {problem}")]
pub struct Deb822Error {
    pub line: usize,
    pub problem: String,
}

/// One paragraph: fields in the order they appear. Values keep their
/// continuation lines (joined by `\n`, leading whitespace of each
/// continuation line kept), with the first line's leading space trimmed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Paragraph<'a> {
    /// Line number (1-based) where the paragraph starts, for error messages.
    pub line: usize,
    fields: Vec<(&'a str, &'a str)>,
}

impl<'a> Paragraph<'a> {
    /// The value of a field; field names are case-insensitive.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.fields
            .iter()
            .find(|(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| *value)
    }

    pub fn fields(&self) -> impl Iterator<Item = (&'a str, &'a str)> + '_ {
        self.fields.iter().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

/// Iterates over the paragraphs of `text`. Comment lines (`#`) are skipped,
/// as dpkg does in control files.
pub fn paragraphs(text: &str) -> Paragraphs<'_> {
    Paragraphs {
        text,
        pos: 0,
        line: 0,
    }
}

pub struct Paragraphs<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
}

impl<'a> Paragraphs<'a> {
    fn next_line(&mut self) -> Option<&'a str> {
        if self.pos >= self.text.len() {
            return None;
        }
        let rest = &self.text[self.pos..];
        let end = rest.find('\n').unwrap_or(rest.len());
        self.pos += (end + 1).min(rest.len());
        self.line += 1;
        Some(rest[..end].strip_suffix('\r').unwrap_or(&rest[..end]))
    }
}

impl<'a> Iterator for Paragraphs<'a> {
    type Item = Result<Paragraph<'a>, Deb822Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut paragraph = Paragraph::default();
        // Start of the current field's value inside `text`, and its end.
        let mut open: Option<(&'a str, usize, usize)> = None;
        loop {
            let line_start = self.pos;
            let Some(line) = self.next_line() else { break };
            if line.trim().is_empty() {
                if paragraph.fields.is_empty() && open.is_none() {
                    continue;
                }
                break;
            }
            if line.starts_with('#') {
                continue;
            }
            if line.starts_with(' ') || line.starts_with('\t') {
                match open.as_mut() {
                    Some((_, _, end)) => *end = line_start + line.len(),
                    None => {
                        return Some(Err(Deb822Error {
                            line: self.line,
                            problem: "continuation line without a field before it".into(),
                        }));
                    }
                }
                continue;
            }
            let Some(colon) = line.find(':') else {
                return Some(Err(Deb822Error {
                    line: self.line,
                    problem: format!("expected `Field: value`, found {line:?}"),
                }));
            };
            if let Some((name, start, end)) = open.take() {
                paragraph.fields.push((name, self.text[start..end].trim()));
            }
            if paragraph.fields.is_empty() {
                paragraph.line = self.line;
            }
            let value_start = line_start + colon + 1;
            open = Some((&line[..colon], value_start, line_start + line.len()));
        }
        if let Some((name, start, end)) = open.take() {
            paragraph.fields.push((name, self.text[start..end].trim()));
        }
        if paragraph.fields.is_empty() {
            None
        } else {
            Some(Ok(paragraph))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &str) -> Vec<Paragraph<'_>> {
        paragraphs(text).collect::<Result<_, _>>().unwrap()
    }

    #[test]
    fn parses_fields_and_paragraphs() {
        let text = "Package: a\nVersion: 1.0\n\n\nPackage: b\nDepends: x,\n y\n";
        let paras = all(text);
        assert_eq!(paras.len(), 2);
        assert_eq!(paras[0].get("package"), Some("a"));
        assert_eq!(paras[0].get("Version"), Some("1.0"));
        assert_eq!(paras[1].get("Depends"), Some("x,\n y"));
        assert_eq!(paras[1].line, 5);
    }

    #[test]
    fn keeps_multiline_hash_lists() {
        let text = "Date: now\nSHA256:\n abc 12 main/Packages\n def 34 main/Packages.xz\n";
        let paras = all(text);
        assert_eq!(
            paras[0].get("SHA256"),
            Some("abc 12 main/Packages\n def 34 main/Packages.xz")
        );
    }

    #[test]
    fn handles_crlf_and_comments() {
        let paras = all("# comment\r\nPackage: a\r\nVersion: 2\r\n");
        assert_eq!(paras[0].get("Version"), Some("2"));
    }

    #[test]
    fn rejects_line_without_colon() {
        let err = paragraphs("Package: a\nnonsense\n")
            .next()
            .unwrap()
            .unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.problem.contains("nonsense"));
    }

    #[test]
    fn rejects_leading_continuation() {
        let err = paragraphs(" orphan\n").next().unwrap().unwrap_err();
        assert_eq!(err.line, 1);
    }
}
