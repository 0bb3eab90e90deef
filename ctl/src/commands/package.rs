//! `egressctl package --wasm FILE --out DIR [--tag TAG]`: the module as an OCI image layout
//! (see [`crate::oci`]); prints the image digest on stdout, alone, for scripts.

use crate::cli::PackageArgs;
use crate::exit::ExitCode;
use crate::oci;
use anyhow::Context;

pub fn run(args: &PackageArgs) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(&args.wasm)
        .with_context(|| format!("cannot read {}", args.wasm.display()))?;
    let img = match oci::image(&bytes) {
        Ok(img) => img,
        Err(e) => {
            eprintln!("egressctl: error: {}: {e:#}", args.wasm.display());
            return Ok(ExitCode::InvalidConfig);
        }
    };
    oci::write_layout(&img, &args.out, &args.tag)?;
    eprintln!(
        "wrote an OCI image layout to {} (tag {}; one layer: {} in a tar.gz)",
        args.out.display(),
        args.tag,
        oci::MODULE_FILE
    );
    println!("{}", img.manifest.digest);
    Ok(ExitCode::Success)
}
