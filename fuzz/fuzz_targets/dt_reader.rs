//! The device-tree reader (`hyp::dt::Fdt`) on arbitrary bytes, then the platform discovery
//! that consumes it (`hyp::platform::Platform::discover`).
//!
//! Invariants: nothing panics; every query on an accepted tree terminates; and a tree the
//! reader accepts, written again node by node with `FdtWriter`, reads back as the same tree
//! (names, properties in order, reservations, structure).
#![no_main]

use hyp::dt::reader::{Fdt, Node};
use hyp::dt::writer::FdtWriter;
use hyp::dt::{DtError, MAX_DEPTH};
use hyp::platform::Platform;
use libfuzzer_sys::fuzz_target;

/// One node as a comparable value: name, properties, children.
#[derive(Debug, PartialEq, Eq)]
struct Tree {
    name: String,
    properties: Vec<(String, Vec<u8>)>,
    children: Vec<Tree>,
}

fn tree_of(node: &Node, depth: usize) -> Tree {
    assert!(
        depth <= MAX_DEPTH,
        "the reader accepted a tree deeper than MAX_DEPTH"
    );
    Tree {
        name: node.name().to_string(),
        properties: node
            .properties()
            .map(|property| (property.name.to_string(), property.value.to_vec()))
            .collect(),
        children: node
            .children()
            .map(|child| tree_of(&child, depth + 1))
            .collect(),
    }
}

fn write(writer: &mut FdtWriter, tree: &Tree) -> Result<(), DtError> {
    writer.begin_node(&tree.name)?;
    for (name, value) in &tree.properties {
        writer.property(name, value)?;
    }
    for child in &tree.children {
        write(writer, child)?;
    }
    writer.end_node()
}

/// Runs every query of the reader on `fdt` (for panics and hangs).
fn exercise(fdt: &Fdt) {
    let _ = fdt.version();
    let _ = fdt.boot_cpuid_phys();
    let _ = fdt.alias("serial0");
    let _ = fdt.find_compatible(&["arm,pl011", "arm,gic-v3", "arm,cortex-a15-gic"]);
    for reservation in fdt.memory_reservations() {
        let _ = reservation;
    }
    for node in fdt.nodes() {
        let _ = (node.base_name(), node.unit_address(), node.phandle());
        let _ = (node.address_cells(), node.size_cells());
        let _ = node.property_u32("#interrupt-cells");
        let _ = node.property_u64("reg");
        let _ = node.property_uint("clock-frequency");
        let _ = node.property_str("status");
        assert!(
            node.property_strings("compatible").count()
                <= node.property("compatible").map_or(0, <[u8]>::len)
        );
        let _ = node.property_cells("interrupts").count();
        let _ = node.interrupts().count();
        let _ = node.is_compatible("arm,psci-1.0");
        let _ = node.child("cpus");
        let _ = fdt.interrupt_parent(&node);
        if let Some(phandle) = node.phandle() {
            assert!(fdt.phandle_node(phandle).is_some());
        }
        if node.offset() != fdt.root().offset() {
            let parent = fdt.parent(&node).expect("a non-root node has a parent");
            assert!(parent.children().any(|child| child == node));
        }
        for (address, _size) in node.reg().take(64) {
            let _ = fdt.translate_address(&node, address);
        }
    }
    for path in [
        "/",
        "/cpus",
        "/memory",
        "/chosen",
        "/soc/serial@7e215040",
        "/psci",
    ] {
        let _ = fdt.find_node(path);
    }
}

fuzz_target!(|bytes: &[u8]| {
    let Ok(fdt) = Fdt::new(bytes) else {
        return;
    };
    assert!(fdt.total_size() <= bytes.len());
    exercise(&fdt);
    let _ = Platform::discover(&fdt);

    // Round trip through the writer.
    let tree = tree_of(&fdt.root(), 0);
    let reservations: Vec<(u64, u64)> = fdt.memory_reservations().collect();
    let mut buffer = vec![0u8; 2 * bytes.len() + 256];
    let mut writer = FdtWriter::new(&mut buffer).expect("buffer holds an empty tree");
    let mut written = Ok(());
    for &(address, size) in &reservations {
        written = written.and_then(|()| writer.add_memory_reservation(address, size));
    }
    let written = written
        .and_then(|()| write(&mut writer, &tree))
        .and_then(|()| writer.finish());
    let size = match written {
        Ok(size) => size,
        // The reader accepts names the writer refuses (a '/' or the like in a name, as
        // some real trees have in properties' names): no round trip to check then.
        Err(DtError::BadName) => return,
        Err(error) => panic!("the writer refused an accepted tree: {error:?}"),
    };
    let again = Fdt::new(&buffer[..size]).expect("the writer's tree reads back");
    assert_eq!(tree_of(&again.root(), 0), tree);
    assert_eq!(
        again.memory_reservations().collect::<Vec<_>>(),
        reservations
    );
});
