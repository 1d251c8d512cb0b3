//! The split virtqueue against a device model in host memory: descriptors
//! and the avail ring as the device reads them, used entries as it writes
//! them, indices wrapping past 65535, and a used entry naming a descriptor
//! that does not exist (reported as id `u16::MAX`, the drivers' drop).

use virtio::queue::{Region, Virtqueue, DESC_F_WRITE, REGION_BYTES};

#[repr(align(4096))]
struct Page([u8; REGION_BYTES]);

fn page() -> Box<Page> {
    Box::new(Page([0; REGION_BYTES]))
}

fn region(p: &mut Page, phys: u64) -> Region {
    Region {
        virt: p.0.as_mut_ptr(),
        phys,
    }
}

fn u16_at(p: &Page, off: usize) -> u16 {
    u16::from_le_bytes([p.0[off], p.0[off + 1]])
}

/// The device: consumes one avail entry, returns it as used with `len`.
fn device_use(avail: &Page, used: &mut Page, size: u16, seen: &mut u16, len: u32) -> u16 {
    let head = u16_at(avail, 4 + 2 * (*seen % size) as usize);
    *seen = seen.wrapping_add(1);
    let idx = u16_at(used, 2);
    let at = 4 + 8 * (idx % size) as usize;
    used.0[at..at + 4].copy_from_slice(&u32::from(head).to_le_bytes());
    used.0[at + 4..at + 8].copy_from_slice(&len.to_le_bytes());
    used.0[2..4].copy_from_slice(&idx.wrapping_add(1).to_le_bytes());
    head
}

#[test]
fn descriptors_avail_and_used_rings_round_trip_and_wrap() {
    let (mut d, mut a, mut u) = (page(), page(), page());
    let size = 8u16;
    // SAFETY: three distinct zeroed pages that outlive the queue.
    let mut q = unsafe {
        Virtqueue::new(
            0,
            size,
            region(&mut d, 0x1000),
            region(&mut a, 0x2000),
            region(&mut u, 0x3000),
        )
    };
    assert_eq!(q.addresses(), (0x1000, 0x2000, 0x3000));
    assert_eq!(q.pop_used(), None);
    let mut seen = 0u16;
    for round in 0..70_000u32 {
        let id = (round % size as u32) as u16;
        q.set_desc(id, 0x10_0000 + u64::from(id) * 2048, 2048, DESC_F_WRITE, 0);
        q.push_avail(id);
        assert_eq!(u16_at(&a, 2), (round + 1) as u16, "avail idx published");
        let at = id as usize * 16;
        assert_eq!(
            u64::from_le_bytes(d.0[at..at + 8].try_into().unwrap()),
            0x10_0000 + u64::from(id) * 2048
        );
        assert_eq!(u16_at(&d, at + 12), DESC_F_WRITE);
        let head = device_use(&a, &mut u, size, &mut seen, 60 + round % 100);
        assert_eq!(head, id);
        assert_eq!(q.pop_used(), Some((id, 60 + round % 100)));
        assert_eq!(q.pop_used(), None);
    }
}

#[test]
fn a_used_entry_beyond_the_queue_is_reported_as_a_drop() {
    let (mut d, mut a, mut u) = (page(), page(), page());
    // SAFETY: as above.
    let mut q = unsafe {
        Virtqueue::new(
            1,
            4,
            region(&mut d, 0),
            region(&mut a, 0),
            region(&mut u, 0),
        )
    };
    u.0[4..8].copy_from_slice(&9u32.to_le_bytes());
    u.0[2..4].copy_from_slice(&1u16.to_le_bytes());
    assert_eq!(q.pop_used(), Some((u16::MAX, 0)));
    assert_eq!(q.pop_used(), None);
}

#[test]
fn suppressing_interrupts_sets_the_avail_flag() {
    let (mut d, mut a, mut u) = (page(), page(), page());
    // SAFETY: as above.
    let mut q = unsafe {
        Virtqueue::new(
            2,
            4,
            region(&mut d, 0),
            region(&mut a, 0),
            region(&mut u, 0),
        )
    };
    q.suppress_interrupts();
    assert_eq!(u16_at(&a, 0), 1);
}
