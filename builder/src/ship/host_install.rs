//! What a rendered `#cloud-config` does to a host, for hosts that install
//! from a bundle without cloud-init: its `write_files` as plain files and
//! its `bootcmd`/`runcmd` (plus the swap part of `mounts`) as one shell
//! script. The user-data stays the single source of what a node gets.

use std::io::Read;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum HostInstallError {
    #[error("the rendered user-data is not valid YAML: {0}")]
    Yaml(String),
    #[error("write_files entry {path}: {reason}")]
    Entry { path: String, reason: String },
    #[error("the rendered user-data is neither #cloud-config nor gzip+base64 of it")]
    NotCloudConfig,
}

/// One file the host gets.
#[derive(Debug, PartialEq, Eq)]
pub struct HostFile {
    /// Absolute path on the host.
    pub path: String,
    pub mode: u32,
    pub content: Vec<u8>,
}

#[derive(Deserialize)]
struct CloudConfig {
    #[serde(default)]
    write_files: Vec<WriteFile>,
    #[serde(default)]
    bootcmd: Vec<Command>,
    #[serde(default)]
    runcmd: Vec<Command>,
    #[serde(default)]
    mounts: Vec<Vec<String>>,
}

#[derive(Deserialize)]
struct WriteFile {
    path: String,
    #[serde(default)]
    content: String,
    #[serde(default)]
    encoding: Option<String>,
    #[serde(default)]
    permissions: Option<String>,
}

/// cloud-init runs a list as argv and a string through `sh -c`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Command {
    Argv(Vec<String>),
    Shell(String),
}

/// The `#cloud-config` text, whether `render` left it as is or packed it.
pub fn unpack(user_data: &str) -> Result<String, HostInstallError> {
    if user_data.starts_with("#cloud-config") {
        return Ok(user_data.to_string());
    }
    let packed = STANDARD
        .decode(user_data.trim())
        .map_err(|_| HostInstallError::NotCloudConfig)?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(packed.as_slice())
        .read_to_string(&mut text)
        .map_err(|_| HostInstallError::NotCloudConfig)?;
    if !text.starts_with("#cloud-config") {
        return Err(HostInstallError::NotCloudConfig);
    }
    Ok(text)
}

fn decode(file: &WriteFile) -> Result<Vec<u8>, HostInstallError> {
    let bad = |reason: String| HostInstallError::Entry {
        path: file.path.clone(),
        reason,
    };
    match file.encoding.as_deref() {
        None | Some("text/plain") => Ok(file.content.clone().into_bytes()),
        Some("b64" | "base64") => STANDARD
            .decode(file.content.trim())
            .map_err(|err| bad(format!("bad base64: {err}"))),
        Some("gz+b64" | "gzip+base64" | "gz+base64" | "gzip+b64") => {
            let packed = STANDARD
                .decode(file.content.trim())
                .map_err(|err| bad(format!("bad base64: {err}")))?;
            let mut bytes = Vec::new();
            flate2::read::GzDecoder::new(packed.as_slice())
                .read_to_end(&mut bytes)
                .map_err(|err| bad(format!("bad gzip: {err}")))?;
            Ok(bytes)
        }
        Some(other) => Err(bad(format!("unknown encoding {other:?}"))),
    }
}

fn mode(file: &WriteFile) -> Result<u32, HostInstallError> {
    match &file.permissions {
        None => Ok(0o644),
        Some(text) => u32::from_str_radix(text.trim_start_matches("0o"), 8).map_err(|_| {
            HostInstallError::Entry {
                path: file.path.clone(),
                reason: format!("permissions {text:?} are not octal"),
            }
        }),
    }
}

/// Single-quoted for sh, whatever the argument holds.
fn shell_quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        return arg.to_string();
    }
    format!("'{}'", arg.replace('\'', r"'\''"))
}

fn command_line(command: &Command) -> String {
    match command {
        Command::Argv(argv) => argv
            .iter()
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" "),
        Command::Shell(text) => text.clone(),
    }
}

/// The files and the setup script of one role's user-data.
pub fn from_user_data(user_data: &str) -> Result<(Vec<HostFile>, String), HostInstallError> {
    let text = unpack(user_data)?;
    let config: CloudConfig =
        serde_yaml_ng::from_str(&text).map_err(|err| HostInstallError::Yaml(err.to_string()))?;
    let mut files = Vec::new();
    for file in &config.write_files {
        if !file.path.starts_with('/') || file.path.contains("..") {
            return Err(HostInstallError::Entry {
                path: file.path.clone(),
                reason: "the path must be absolute, without ..".into(),
            });
        }
        files.push(HostFile {
            path: file.path.clone(),
            mode: mode(file)?,
            content: decode(file)?,
        });
    }
    let mut script = String::from(
        "#!/bin/sh\n# What cloud-init's bootcmd, mounts and runcmd would do on this node.\nset -eu\n",
    );
    for command in &config.bootcmd {
        script.push_str(&command_line(command));
        script.push('\n');
    }
    if config
        .mounts
        .iter()
        .any(|m| m.first().is_some_and(|d| d == "swap"))
    {
        // cloud-init's `mounts: [[swap]]` removes the swap entry from fstab.
        script.push_str(
            "sed -i '/^[^#].*[[:space:]]swap[[:space:]]/ s/^/# nodeimg: swap off # /' /etc/fstab\n",
        );
    }
    for command in &config.runcmd {
        script.push_str(&command_line(command));
        script.push('\n');
    }
    Ok((files, script))
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER_DATA: &str = r#"#cloud-config
bootcmd:
  - [ sh, -c, "swapoff -a || true" ]
mounts:
  - [ swap ]
write_files:
  - path: /etc/nodeimg/cluster.toml
    encoding: gz+b64
    permissions: '0644'
    content: H4sIAAAAAAAC/8tLzE1VsFVQKkktLlHiAgC1TuVPDgAAAA==
  - path: /etc/nodeimg/secrets.toml
    permissions: '0600'
    content: |
      a = 'it''s'
  - path: /etc/x.conf
    content: plain
runcmd:
  - [ systemctl, enable, --now, nodeimg.service ]
  - echo "shell form"
"#;

    #[test]
    fn files_keep_content_and_mode_and_commands_keep_their_quoting() {
        let (files, script) = from_user_data(USER_DATA).unwrap();
        assert_eq!(
            files[0],
            HostFile {
                path: "/etc/nodeimg/cluster.toml".into(),
                mode: 0o644,
                content: b"name = \"test\"\n".to_vec(),
            }
        );
        assert_eq!(files[1].mode, 0o600);
        assert_eq!(files[1].content, b"a = 'it''s'\n");
        assert_eq!(
            (files[2].mode, files[2].content.as_slice()),
            (0o644, &b"plain"[..])
        );
        assert_eq!(
            script.lines().skip(3).collect::<Vec<_>>(),
            vec![
                "sh -c 'swapoff -a || true'",
                "sed -i '/^[^#].*[[:space:]]swap[[:space:]]/ s/^/# nodeimg: swap off # /' /etc/fstab",
                "systemctl enable --now nodeimg.service",
                "echo \"shell form\"",
            ]
        );
    }

    #[test]
    fn packed_user_data_is_unpacked_and_relative_paths_refused() {
        let packed = crate::ship::cloud_init::gzip_base64(USER_DATA.as_bytes());
        assert_eq!(from_user_data(&packed).unwrap().0.len(), 3);
        let err = from_user_data("#cloud-config\nwrite_files:\n  - path: etc/x\n    content: a\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("etc/x") && err.contains("absolute"), "{err}");
        assert!(matches!(
            from_user_data("not yaml at all"),
            Err(HostInstallError::NotCloudConfig)
        ));
    }
}
