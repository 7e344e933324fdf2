//! Problems found while loading, each naming its file, line and field; every check adds to one list.

use std::fmt;

/// One problem in a file, with its line (0 when unknown) and field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// File path as given.
    pub file: String,
    /// 1-based line, 0 when unknown.
    pub line: u64,
    /// The field at fault.
    pub field: String,
    /// What is wrong and what would be valid.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(
                f,
                "{}:{}: {}: {}",
                self.file, self.line, self.field, self.message
            )
        } else {
            write!(f, "{}: {}: {}", self.file, self.field, self.message)
        }
    }
}

/// Every problem found in one pass.
#[derive(Clone, Debug, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Records a problem.
    pub fn push(&mut self, file: &str, line: u64, field: &str, message: impl Into<String>) {
        self.0.push(Diagnostic {
            file: file.to_string(),
            line,
            field: field.to_string(),
            message: message.into(),
        });
    }
    /// Number recorded so far.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Nothing recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}
