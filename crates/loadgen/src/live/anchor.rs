//! The anchor of (a): nginx with Debian's `libnginx-mod-rtmp`, the usual self-hosted RTMP
//! to HLS server, fed the very same stream as Plaza (the publisher's `tee`), with 1 s
//! fragments like Plaza's. Its playlist is read from its directory (as ffmpeg's own is)
//! and served over HTTP for the headless player (glass to glass).

use super::free_port;
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const RTMP_MODULE: &str = "/usr/lib/nginx/modules/ngx_rtmp_module.so";
/// The stream's name under the `live` application: the playlist is `bench.m3u8`.
const STREAM: &str = "bench";

/// A running nginx in a directory of its own; stopped when dropped.
pub(super) struct Nginx {
    _child: tokio::process::Child,
    pub(super) rtmp_url: String,
    /// The playlist nginx writes.
    pub(super) playlist: PathBuf,
    /// The playlist over HTTP, and the origin serving it.
    pub(super) playlist_url: String,
    pub(super) http_base: String,
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// nginx on two free loopback ports, or `None` (said once) when it is not installed:
    /// `apt-get install -y nginx-light libnginx-mod-rtmp`.
    pub(super) async fn start() -> anyhow::Result<Option<Self>> {
        if !Path::new(RTMP_MODULE).exists() || which("nginx").is_none() {
            println!("(nginx with libnginx-mod-rtmp is not installed: no nginx anchor; apt-get install -y nginx-light libnginx-mod-rtmp)");
            println!();
            return Ok(None);
        }
        let dir = tempfile::tempdir()?;
        let (rtmp_port, http_port) = (free_port()?, free_port()?);
        let root = dir.path().to_string_lossy().to_string();
        std::fs::create_dir_all(dir.path().join("hls"))?;
        std::fs::write(dir.path().join("nginx.conf"), config(&root, rtmp_port, http_port))?;
        let child = tokio::process::Command::new("nginx")
            .args(["-p", &root, "-c", &format!("{root}/nginx.conf")])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("nginx")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", rtmp_port)).await.is_err() {
            anyhow::ensure!(Instant::now() < deadline, "nginx did not listen on {rtmp_port} within 10 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Some(Self {
            _child: child,
            rtmp_url: format!("rtmp://127.0.0.1:{rtmp_port}/live/{STREAM}"),
            playlist: dir.path().join("hls").join(format!("{STREAM}.m3u8")),
            playlist_url: format!("http://127.0.0.1:{http_port}/{STREAM}.m3u8"),
            http_base: format!("http://127.0.0.1:{http_port}"),
            _dir: dir,
        }))
    }
}

/// One foreground process, no workers to outlive it; 1 s fragments (cut at keyframes,
/// which the publisher makes every second) and the whole stream kept in the playlist.
fn config(root: &str, rtmp_port: u16, http_port: u16) -> String {
    format!(
        "load_module {RTMP_MODULE};
daemon off;
master_process off;
worker_processes 1;
error_log {root}/error.log warn;
pid {root}/nginx.pid;
events {{ worker_connections 256; }}
rtmp {{
    server {{
        listen 127.0.0.1:{rtmp_port};
        application live {{
            live on;
            record off;
            hls on;
            hls_path {root}/hls;
            hls_fragment 1s;
            hls_playlist_length 600s;
            hls_cleanup off;
        }}
    }}
}}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    types {{ application/vnd.apple.mpegurl m3u8; video/mp2t ts; }}
    server {{
        listen 127.0.0.1:{http_port};
        location / {{
            root {root}/hls;
            add_header Cache-Control no-cache;
        }}
    }}
}}
"
    )
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|path| path.is_file())
        .or_else(|| Some(PathBuf::from("/usr/sbin").join(program)).filter(|path| path.is_file()))
}
