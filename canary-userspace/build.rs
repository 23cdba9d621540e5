//! With the `dataplane` feature: builds canary-ebpf for the BPF target with
//! the nightly toolchain (via aya-build) and leaves the object in OUT_DIR,
//! where `dataplane` embeds it. Without it there is nothing to build.

fn main() -> anyhow::Result<()> {
    #[cfg(feature = "dataplane")]
    {
        let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")?;
        let root = std::path::Path::new(&manifest_dir).join("../canary-ebpf");
        let root = root
            .to_str()
            .ok_or_else(|| anyhow::anyhow!("non-UTF-8 path {root:?}"))?;
        let ebpf = aya_build::Package {
            name: "canary-ebpf",
            root_dir: root,
            ..Default::default()
        };
        aya_build::build_ebpf([ebpf], aya_build::Toolchain::default())?;
    }
    Ok(())
}
