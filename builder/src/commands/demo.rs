//! `nodeimg demo up|status|down`: a local cluster on Docker from the built
//! images (`ship::demo`).

use crate::ship::demo::{self, Demo, UpOptions};

pub enum Action {
    Up(UpOptions),
    Status { demo: Demo, json: bool },
    Down(Demo),
}

pub fn run(action: &Action) -> anyhow::Result<()> {
    match action {
        Action::Up(options) => demo::up(options),
        Action::Status { demo, json } => {
            let status = demo::status(demo)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                demo::print_status(&status);
            }
            Ok(())
        }
        Action::Down(which) => {
            let removed = demo::down(which)?;
            eprintln!(
                "removed demo `{}`: {} containers, {} volumes, {} networks",
                which.name,
                removed.containers.len(),
                removed.volumes.len(),
                removed.networks.len()
            );
            Ok(())
        }
    }
}
