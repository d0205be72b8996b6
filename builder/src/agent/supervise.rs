//! PID 1 of a nodeimg container: starts the role's services in order,
//! restarts one that crashes (with backoff), reaps every zombie (orphans
//! are reparented to PID 1), and on SIGTERM/SIGINT stops the services in
//! reverse order, each given time to finish, so Patroni can hand over the
//! leader lock before etcd goes away. SIGHUP asks the caller what changed
//! (a secrets rotation) and reloads or restarts the services it names.
//!
//! Only this loop calls `waitpid`. Short commands run by other threads
//! (psql) go through [`ProcessTable::run`], which registers the child under
//! the same lock the reaper holds, so no exit status is ever stolen.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};

/// One long-running program of a role.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The whole environment of the child: nothing else is inherited, so
    /// secrets given to the agent do not leak into services.
    pub env: Vec<(String, String)>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub workdir: Option<PathBuf>,
    /// How long a graceful stop may take before SIGKILL.
    pub stop_timeout: Duration,
}

impl ServiceSpec {
    fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.args).env_clear().envs(self.env.clone());
        if let Some(dir) = &self.workdir {
            command.current_dir(dir);
        }
        if let Some(gid) = self.gid {
            command.gid(gid);
        }
        // With a uid set, std also clears root's supplementary groups.
        if let Some(uid) = self.uid {
            command.uid(uid);
        }
        // Its own process group, so a forced stop reaches its children
        // (postgres under Patroni) as well.
        command.process_group(0);
        command
    }
}

/// What a service needs after its files changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// The signal that makes it re-read its files (to its main process).
    Signal(Signal),
    /// It reads some files only at start: stopped, then started again.
    Restart,
}

/// Restart delays: 1 s, doubling up to 30 s; back to 1 s once a service
/// has stayed up for a minute.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const HEALTHY_AFTER: Duration = Duration::from_secs(60);
const TICK: Duration = Duration::from_millis(50);

struct Service {
    spec: ServiceSpec,
    pid: Option<Pid>,
    started: Instant,
    backoff: Duration,
    restart_at: Option<Instant>,
}

/// Children started by other threads, waiting for their exit status.
#[derive(Clone, Default)]
pub struct ProcessTable {
    waiting: Arc<Mutex<HashMap<i32, mpsc::Sender<i32>>>>,
}

/// What [`ProcessTable::run`] gives back.
#[derive(Debug)]
pub struct RunOutput {
    /// Exit code, or 128 + signal number.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl ProcessTable {
    /// Runs a short command to completion and returns its output. Safe to
    /// call while the supervisor reaps every child of the process.
    pub fn run(&self, mut command: Command) -> std::io::Result<RunOutput> {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let (sender, receiver) = mpsc::channel();
        let mut child = {
            let mut waiting = self.waiting.lock().unwrap();
            let child = command.spawn()?;
            waiting.insert(child.id() as i32, sender);
            child
        };
        let mut stdout = String::new();
        let mut stderr = String::new();
        let mut err_pipe = child.stderr.take().expect("piped");
        // Lossy: one byte that is not UTF-8 (pgBackRest quotes what it
        // failed to decrypt) must not cost the whole output.
        let err_reader = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = err_pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        });
        if let Some(mut out) = child.stdout.take() {
            let mut bytes = Vec::new();
            let _ = out.read_to_end(&mut bytes);
            stdout.push_str(&String::from_utf8_lossy(&bytes));
        }
        stderr.push_str(&err_reader.join().unwrap_or_default());
        let code = receiver.recv().map_err(|_| {
            std::io::Error::other("the supervisor stopped before the command finished")
        })?;
        // The status was collected by the reaper; keep std from waiting.
        std::mem::forget(child);
        Ok(RunOutput {
            code,
            stdout,
            stderr,
        })
    }

    /// Reaps every exited child; returns the ones that are not waited for
    /// by a [`ProcessTable::run`] caller.
    fn reap(&self) -> Vec<(Pid, i32)> {
        let mut exited = Vec::new();
        let mut waiting = self.waiting.lock().unwrap();
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => exited.push((pid, code)),
                Ok(WaitStatus::Signaled(pid, signal, _)) => exited.push((pid, 128 + signal as i32)),
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
        exited
            .into_iter()
            .filter(|(pid, code)| match waiting.remove(&pid.as_raw()) {
                Some(sender) => {
                    let _ = sender.send(*code);
                    false
                }
                None => true,
            })
            .collect()
    }
}

/// Runs the services until SIGTERM or SIGINT, then stops them in reverse
/// order. On SIGHUP, `on_reload` rewrites the files and names what each
/// service needs. Returns the exit code for the container.
pub fn run(
    specs: Vec<ServiceSpec>,
    table: &ProcessTable,
    on_reload: &mut dyn FnMut() -> Vec<(String, Reload)>,
) -> anyhow::Result<i32> {
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGCHLD, SIGHUP])?;
    let mut services: Vec<Service> = specs
        .into_iter()
        .map(|spec| Service {
            spec,
            pid: None,
            started: Instant::now(),
            backoff: FIRST_BACKOFF,
            restart_at: Some(Instant::now()),
        })
        .collect();
    loop {
        let mut stop_requested = None;
        let mut reload_requested = false;
        for signal in signals.pending() {
            if signal == SIGTERM || signal == SIGINT {
                stop_requested = Some(signal);
            }
            reload_requested |= signal == SIGHUP;
        }
        if reload_requested && stop_requested.is_none() {
            tracing::info!("received SIGHUP: re-reading the secrets and reloading what changed");
            for (name, action) in on_reload() {
                let Some(service) = services.iter_mut().find(|s| s.spec.name == name) else {
                    continue;
                };
                match (action, service.pid) {
                    (Reload::Signal(signal), Some(pid)) => {
                        tracing::info!("{name}: {} to reload", signal.as_str());
                        let _ = nix::sys::signal::kill(pid, signal);
                    }
                    (Reload::Restart, Some(_)) => {
                        tracing::info!("{name}: restarting (it reads these files only at start)");
                        stop_one(service, table);
                        service.restart_at = Some(Instant::now());
                    }
                    // Not running: it reads the new files when it starts.
                    (_, None) => {}
                }
            }
        }
        if let Some(signal) = stop_requested {
            tracing::info!(
                "received {}: stopping services in reverse order",
                if signal == SIGTERM {
                    "SIGTERM"
                } else {
                    "SIGINT"
                }
            );
            stop_all(&mut services, table);
            return Ok(0);
        }
        for (pid, code) in table.reap() {
            if let Some(service) = services.iter_mut().find(|s| s.pid == Some(pid)) {
                service.pid = None;
                if service.started.elapsed() >= HEALTHY_AFTER {
                    service.backoff = FIRST_BACKOFF;
                }
                tracing::warn!(
                    "{} exited with {}; restarting in {}s",
                    service.spec.name,
                    describe(code),
                    service.backoff.as_secs()
                );
                service.restart_at = Some(Instant::now() + service.backoff);
                service.backoff = (service.backoff * 2).min(MAX_BACKOFF);
            }
            // Anything else was an orphan reparented to us: reaped, done.
        }
        for service in &mut services {
            if service.restart_at.is_some_and(|at| Instant::now() >= at) {
                service.restart_at = None;
                start(service, table);
            }
        }
        std::thread::sleep(TICK);
    }
}

fn start(service: &mut Service, table: &ProcessTable) {
    // Under the reaper's lock, so a child that dies at once is still ours.
    let _guard = table.waiting.lock().unwrap();
    match service.spec.command().spawn() {
        Ok(child) => {
            tracing::info!(
                "started {} (pid {}): {} {}",
                service.spec.name,
                child.id(),
                service.spec.program.display(),
                service.spec.args.join(" ")
            );
            service.pid = Some(Pid::from_raw(child.id() as i32));
            service.started = Instant::now();
            std::mem::forget(child);
        }
        Err(err) => {
            tracing::error!(
                "cannot start {} ({}): {err}; retrying in {}s",
                service.spec.name,
                service.spec.program.display(),
                service.backoff.as_secs()
            );
            service.restart_at = Some(Instant::now() + service.backoff);
            service.backoff = (service.backoff * 2).min(MAX_BACKOFF);
        }
    }
}

fn stop_all(services: &mut [Service], table: &ProcessTable) {
    for service in services.iter_mut().rev() {
        stop_one(service, table);
    }
    table.reap();
}

/// SIGTERM, then SIGKILL after the service's stop timeout.
fn stop_one(service: &mut Service, table: &ProcessTable) {
    {
        let Some(pid) = service.pid else { return };
        tracing::info!("stopping {} (pid {pid})", service.spec.name);
        let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + service.spec.stop_timeout;
        while service.pid.is_some() {
            for (exited, code) in table.reap() {
                if Some(exited) == service.pid {
                    tracing::info!("{} stopped ({})", service.spec.name, describe(code));
                    service.pid = None;
                }
            }
            if service.pid.is_some() && Instant::now() >= deadline {
                tracing::warn!(
                    "{} did not stop within {}s: killing it",
                    service.spec.name,
                    service.spec.stop_timeout.as_secs()
                );
                let _ = killpg(pid, Signal::SIGKILL);
                service.spec.stop_timeout = Duration::from_secs(5);
                // One more round to reap it.
                std::thread::sleep(TICK);
                table.reap();
                service.pid = None;
            }
            std::thread::sleep(TICK);
        }
        // Whatever the service left in its group (postgres backends).
        let _ = killpg(pid, Signal::SIGKILL);
    }
}

fn describe(code: i32) -> String {
    if code > 128 {
        match Signal::try_from(code - 128) {
            Ok(signal) => format!("signal {}", signal.as_str()),
            Err(_) => format!("status {code}"),
        }
    } else {
        format!("status {code}")
    }
}
