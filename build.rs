//! Records the target triple for `--version`: operators copying one of several release
//! binaries onto a host need to see which one they have.

fn main() {
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".to_string());
    println!("cargo:rustc-env=HEALTH_CHECKER_TARGET={target}");
    println!("cargo:rerun-if-changed=build.rs");
}
