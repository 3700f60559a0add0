//! Starting and stopping a `plaza serve` under test.

use anyhow::Context;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub struct PlazaServer {
    child: Child,
    pub base: String,
    _data_dir: tempfile::TempDir,
}

impl PlazaServer {
    /// Starts `plaza serve` on a free loopback port; `env` adds settings.
    pub fn start(plaza: &Path, database_url: Option<&str>, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let data_dir = tempfile::tempdir()?;
        let mut command = Command::new(plaza);
        command
            .arg("serve")
            .env("PLAZA_ADDR", "127.0.0.1:0")
            .env("PLAZA_DATA_DIR", data_dir.path())
            .env("PLAZA_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(url) = database_url {
            command.env("PLAZA_DATABASE_URL", url);
        }
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().with_context(|| format!("starting {}", plaza.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let base = line
            .split_whitespace()
            .find(|word| word.starts_with("http://"))
            .map(|url| url.trim_end_matches('/').to_string())
            .with_context(|| format!("plaza did not print its address: {line:?}"))?;
        Ok(Self { child, base, _data_dir: data_dir })
    }
}

impl Drop for PlazaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
