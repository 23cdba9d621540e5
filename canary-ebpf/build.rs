use which::which;

/// Rebuild when bpf-linker changes: cargo does not track the linker, so a new
/// bpf-linker would otherwise silently reuse objects built by the old one.
fn main() {
    let linker = which("bpf-linker").expect(
        "bpf-linker not found on PATH: run `cargo xtask setup` (it installs bpf-linker for LLVM 22)",
    );
    println!("cargo:rerun-if-changed={}", linker.display());
}
