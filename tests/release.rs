//! `make release-test`: the binaries `make release` put in `HC_DIST`, each run as it would run
//! on its host (natively, or under qemu-user for ARM). Ignored by `cargo test`.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn dist() -> PathBuf {
    PathBuf::from(std::env::var("HC_DIST").expect("HC_DIST: run this through make release-test"))
}

/// Every release binary with its target triple.
fn binaries() -> Vec<(PathBuf, String)> {
    let prefix = format!("health-checker-{}-", env!("CARGO_PKG_VERSION"));
    let mut out: Vec<_> = fs::read_dir(dist())
        .unwrap()
        .filter_map(|e| {
            let path = e.ok()?.path();
            let triple = path
                .file_name()?
                .to_str()?
                .strip_prefix(&prefix)?
                .to_string();
            Some((path, triple))
        })
        .collect();
    out.sort();
    assert_eq!(
        out.len(),
        3,
        "expected three release binaries in {}",
        dist().display()
    );
    out
}

/// A command that runs `bin` on this x86_64 host: directly, or through qemu-user.
fn runner(bin: &Path, triple: &str) -> Command {
    let emulator = match triple.split('-').next() {
        Some("x86_64") => None,
        Some("aarch64") => Some("qemu-aarch64-static"),
        Some("armv7" | "thumbv7neon") => Some("qemu-arm-static"),
        other => panic!("no way to run {other:?} here"),
    };
    match emulator {
        None => Command::new(bin),
        Some(qemu) => {
            let mut c = Command::new(qemu);
            c.arg(bin);
            c
        }
    }
}

#[test]
#[ignore = "run with make release-test"]
fn every_release_binary_serves_under_its_emulator() {
    for (bin, triple) in binaries() {
        let out = runner(&bin, &triple).arg("--version").output().unwrap();
        let version = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            version.trim(),
            format!("health-checker {} ({triple})", env!("CARGO_PKG_VERSION"))
        );

        // A TCP check by name: static builds must still resolve `localhost`.
        let (_l, port) = open_port();
        let mut cmd = runner(&bin, &triple);
        cmd.args([
            "--listener",
            "127.0.0.1:0",
            "--tcp",
            &format!("localhost:{port}"),
            "--port",
            &port.to_string(),
        ]);
        let s = Server::start_cmd(cmd);
        let r = s.get("/");
        assert_eq!(r.status, 200, "{triple}: {}", r.body);
        assert!(
            r.body.contains(&format!("pass tcp localhost:{port}")),
            "{triple}: {}",
            r.body
        );
        drop(s);

        let mut cmd = runner(&bin, &triple);
        cmd.args(["--listener", "127.0.0.1:0", "--script", "false"]);
        let s = Server::start_cmd(cmd);
        let r = s.get("/");
        assert_eq!(r.status, 504, "{triple}: {}", r.body);
        assert!(
            r.body.contains("fail script false: exited with status 1"),
            "{triple}: {}",
            r.body
        );
        println!("{triple}: --version, 200 and 504 as expected");
    }
}

/// Whether an ELF file asks for a program interpreter (a dynamic loader): PT_INTERP.
fn has_interpreter(elf: &[u8]) -> bool {
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    let wide = elf[4] == 2;
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap()) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap()) as usize;
    let (phoff, phentsize, phnum) = if wide {
        (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    } else {
        (u32_at(0x1c), u16_at(0x2a), u16_at(0x2c))
    };
    (0..phnum).any(|i| u32_at(phoff + i * phentsize) == 3)
}

#[test]
#[ignore = "run with make release-test"]
fn release_binaries_are_static_and_within_budget() {
    let budget: u64 = std::env::var("HC_SIZE_BUDGET")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1 << 20);
    for (bin, triple) in binaries() {
        let elf = fs::read(&bin).unwrap();
        assert!(!has_interpreter(&elf), "{triple} needs a dynamic loader");
        assert!(
            elf.len() as u64 <= budget,
            "{triple}: {} bytes, budget {budget}",
            elf.len()
        );
        println!("{triple}: static, {} bytes", elf.len());
    }
    // The check itself must be able to fail: the test binary is dynamically linked.
    let me = fs::read(std::env::current_exe().unwrap()).unwrap();
    assert!(
        has_interpreter(&me),
        "the ELF reader sees no interpreter even in a dynamic binary"
    );
}

#[test]
#[ignore = "run with make release-test"]
fn checksums_verify() {
    let out = Command::new("sha256sum")
        .arg("-c")
        .arg("SHA256SUMS")
        .current_dir(dist())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).matches(": OK").count(),
        3
    );
}
