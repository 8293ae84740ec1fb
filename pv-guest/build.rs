//! Build script: hands the linker script to the linker for the bare-metal binary.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg-bins=-T{dir}/link.ld");
    // The prebuilt `core` of this target is not PIC: without LTO (dev builds) its
    // read-only vtables carry absolute relocations. Let the linker turn them into
    // R_AARCH64_RELATIVE entries of .rela.dyn, which the entry code applies like all
    // others (the image is writable: the MMU is off, then our map is RWX for RAM).
    println!("cargo:rustc-link-arg-bins=-znotext");
    println!("cargo:rerun-if-changed=link.ld");
    println!("cargo:rerun-if-changed=build.rs");
}
