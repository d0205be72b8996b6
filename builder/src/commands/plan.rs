//! `nodeimg plan`: prints the Hetzner Cloud steps (`ship::hetzner_plan`)
//! as `hcloud` commands or, with `--json`, as API request bodies.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::cluster::ClusterSpec;
use crate::ship::hetzner_plan::steps;

pub struct PlanOptions {
    pub cluster: PathBuf,
    pub user_data: PathBuf,
    pub json: bool,
}

pub fn run(options: &PlanOptions) -> anyhow::Result<()> {
    let spec = ClusterSpec::load(&options.cluster)?;
    let steps = steps(&spec, &options.user_data)?;
    if options.json {
        let calls: Vec<Value> = steps
            .iter()
            .map(|s| json!({"method": s.method, "path": s.path, "body": s.body}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&calls)?);
    } else {
        println!("# Creates cluster {} on Hetzner Cloud.", spec.cluster.name);
        println!(
            "# In JSON request paths, {{name}} stands for the server id the create call returns."
        );
        for step in &steps {
            println!("{}", step.command);
        }
    }
    Ok(())
}
