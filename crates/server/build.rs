//! Tells cargo when to re-embed the web client. `web/dist` is the Vite build output
//! that `src/web.rs` embeds; it is absent in Rust-only checkouts, and then the binary
//! serves a placeholder page instead. Watching the directory that exists (the build
//! output, or `web/` until there is one) rebuilds the crate when the client is rebuilt,
//! without rerunning this script on every build.

fn main() {
    let manifest_dir = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let web = manifest_dir.join("../../web");
    let dist = web.join("dist");
    if dist.join("index.html").is_file() {
        println!("cargo:rerun-if-changed={}", dist.display());
    } else if web.is_dir() {
        println!("cargo:rerun-if-changed={}", web.join("package.json").display());
        println!("cargo:rerun-if-changed={}", web.display());
    }
    println!("cargo:rerun-if-changed=build.rs");
}
