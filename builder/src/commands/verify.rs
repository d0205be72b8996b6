//! `nodeimg verify images/<role>` or `nodeimg verify <bundle>`
//! (`ship::verify`).

pub use crate::ship::verify::VerifyOptions;

pub fn run(options: &VerifyOptions) -> anyhow::Result<()> {
    crate::ship::verify::verify(options)
}
