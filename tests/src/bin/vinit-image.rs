//! `vinit-image OUT.eif [INITRD]`: writes the `cloister-vinit` test image (see
//! `cloister_tests::microvm`), and optionally its ramdisks concatenated as a plain initrd, for
//! `scripts/bench-boot`'s bare-QEMU run of the same guest. Prints the kernel's path.

fn main() {
    let mut args = std::env::args_os().skip(1);
    let Some(out) = args.next().map(std::path::PathBuf::from) else {
        eprintln!("usage: vinit-image OUT.eif [INITRD]");
        std::process::exit(2);
    };
    let kernel = cloister_tests::microvm::kernel();
    let vinit = cloister_tests::microvm::vinit();
    let config = cloister_tests::microvm::placeholder_config();
    let pcrs = cloister_tests::microvm::image(&out, &vinit, &kernel, &config);
    if let Some(initrd) = args.next() {
        let disks = cloister_tests::microvm::ramdisks(&vinit, &kernel, &config);
        let mut bytes = Vec::new();
        for d in &disks {
            bytes.extend_from_slice(d.as_bytes());
        }
        if let Err(e) = std::fs::write(&initrd, bytes) {
            eprintln!("writing the initrd: {e}");
            std::process::exit(1);
        }
    }
    println!("vmlinuz {}", kernel.vmlinuz.display());
    println!("pcr0 {}", pcrs.pcr0);
}
