//! Property tests: arbitrary (and lightly mutated) input never makes a
//! bootfmt parser panic, and the cpio writer round-trips arbitrary members.

use bootfmt::{cpio, elf, limine_conf};
use proptest::prelude::*;

/// A valid archive to mutate, so that the fuzzing reaches past the magic.
fn sample_archive() -> Vec<u8> {
    let mut w = cpio::NewcWriter::new();
    w.add_dir("boot", 0o755);
    w.add_file(
        "limine.conf",
        0o644,
        b"/k\nprotocol: limine\npath: boot():/boot/kernel.elf\n",
    );
    w.add_file("boot/kernel.elf", 0o644, &[0x7f, b'E', b'L', b'F', 2, 1, 1]);
    w.finish()
}

proptest! {
    #[test]
    fn cpio_arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        for e in cpio::entries(&bytes) {
            let _ = e.map(|e| e.data.len());
        }
        let _ = cpio::find(&bytes, "limine.conf");
    }

    #[test]
    fn cpio_mutated_archive_never_panics(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
        let mut bytes = sample_archive();
        for (pos, value) in flips {
            let len = bytes.len();
            bytes[pos % len] = value;
        }
        let cut = cut % (bytes.len() + 1);
        for e in cpio::entries(&bytes[..cut]) {
            if let Err(err) = e { let _ = err.to_string(); }
        }
    }

    #[test]
    fn cpio_writer_round_trips(files in proptest::collection::vec(("[a-z/._]{1,20}", proptest::collection::vec(any::<u8>(), 0..300)), 0..6)) {
        let mut w = cpio::NewcWriter::new();
        for (name, data) in &files {
            w.add_file(name, 0o644, data);
        }
        let archive = w.finish();
        let got: Vec<_> = cpio::entries(&archive).collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(got.len(), files.len());
        for (entry, (name, data)) in got.iter().zip(&files) {
            prop_assert_eq!(entry.name, name.as_str());
            prop_assert_eq!(entry.data, data.as_slice());
        }
    }

    #[test]
    fn elf_arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..800)) {
        check_elf(&bytes);
    }

    #[test]
    fn elf_with_valid_magic_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 64..1200), phnum in 0u16..6, shnum in 0u16..6) {
        bytes[..8].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
        bytes[18..20].copy_from_slice(&62u16.to_le_bytes());
        bytes[20..24].copy_from_slice(&1u32.to_le_bytes());
        bytes[32..40].copy_from_slice(&64u64.to_le_bytes());
        bytes[54..56].copy_from_slice(&56u16.to_le_bytes());
        bytes[56..58].copy_from_slice(&phnum.to_le_bytes());
        bytes[58..60].copy_from_slice(&64u16.to_le_bytes());
        bytes[60..62].copy_from_slice(&shnum.to_le_bytes());
        check_elf(&bytes);
    }

    #[test]
    fn conf_arbitrary_text_never_panics(text in "(?s).{0,400}") {
        if let Ok(e) = limine_conf::first_limine_entry(&text) {
            let _ = limine_conf::boot_uri_path(e.kernel_path);
            prop_assert!(e.modules().len() <= limine_conf::MAX_MODULES);
        }
        let _ = limine_conf::boot_uri_path(&text);
        let _ = limine_conf::cfg_to_conf(&text);
    }

    #[test]
    fn conf_line_soup_never_panics(lines in proptest::collection::vec(prop_oneof![
        Just("/e".to_string()), Just("protocol: limine".to_string()), Just("path: boot():/k".to_string()),
        Just("module_path: boot():/m".to_string()), Just("module_cmdline: x".to_string()),
        Just(":Old".to_string()), Just("KERNEL_PATH=boot:///k".to_string()), "[ -~]{0,20}",
    ], 0..40)) {
        let text = lines.join("\n");
        let _ = limine_conf::first_limine_entry(&text);
        if let Ok(conf) = limine_conf::cfg_to_conf(&text) {
            let _ = limine_conf::first_limine_entry(&conf);
        }
    }
}

fn check_elf(bytes: &[u8]) {
    if let Ok(f) = elf::parse(bytes) {
        for ph in f.program_headers() {
            let _ = f.segment_data(&ph);
        }
        let _ = f.load_span();
        if let Ok(sections) = f.sections() {
            for s in sections {
                let _ = s.name.len();
            }
        }
        let _ = f.section_by_name(".requests");
    } else if let Err(e) = elf::parse(bytes) {
        let _ = e.to_string();
    }
}
