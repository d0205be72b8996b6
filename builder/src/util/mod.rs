//! Small helpers every stage uses: atomic file writes and progress bars.

pub mod fsutil;
pub mod json;
pub mod private_file;
pub mod progress;
