//! `nodeimg build`: builds the recipes' images (`image::build`) and prints
//! one summary line per image on stderr and `<role> <digest>` on stdout.

pub use crate::image::build::BuildOptions;

pub fn run(options: &BuildOptions) -> anyhow::Result<()> {
    for built in crate::image::build::build(options)? {
        eprintln!(
            "{}: {} ({}){} — {} packages in {} layers, {:.1} MB uncompressed, {:.1} MB compressed, {:.2}s",
            built.role,
            built.manifest_digest,
            built.reference,
            if built.up_to_date { ", up to date" } else { "" },
            built.packages,
            built.layers,
            built.uncompressed_bytes as f64 / 1e6,
            built.compressed_bytes as f64 / 1e6,
            built.seconds
        );
        println!("{} {}", built.role, built.manifest_digest);
    }
    Ok(())
}
