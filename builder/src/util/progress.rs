//! Progress bars for long work (downloads, layer builds), drawn only when
//! stderr is a terminal: logs and CI output stay plain lines.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A bar counting `total` items.
    pub fn new(total: u64, what: &str) -> Progress {
        Progress::with_style(total, what, "{prefix} [{bar:30}] {pos}/{len} {wide_msg}")
    }

    /// A bar counting `total` bytes.
    pub fn bytes(total: u64, what: &str) -> Progress {
        Progress::with_style(
            total,
            what,
            "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {wide_msg}",
        )
    }

    fn with_style(total: u64, what: &str, template: &str) -> Progress {
        if !std::io::stderr().is_terminal() || total == 0 {
            return Progress { bar: None };
        }
        let bar = ProgressBar::new(total).with_prefix(what.to_string());
        bar.set_style(
            ProgressStyle::with_template(template)
                .expect("the template is valid")
                .progress_chars("=> "),
        );
        Progress { bar: Some(bar) }
    }

    pub fn working_on(&self, message: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(message.to_string());
        }
    }

    pub fn advance(&self, amount: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(amount);
        }
    }

    pub fn done_one(&self) {
        self.advance(1);
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
