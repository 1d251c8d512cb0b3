//! The CMOS real-time clock, read once at boot for `CLOCK_REALTIME`.
//!
//! Owns the RTC register reads (ports 0x70/0x71).  Invariant: a reading is
//! taken only when two consecutive reads agree and no update is in
//! progress, so a rollover in the middle cannot produce a wrong date.
//! Must not: write any CMOS register (the NMI-disable bit of port 0x70 is
//! left clear).

use x86_64::instructions::port::Port;

fn read_register(reg: u8) -> u8 {
    // SAFETY: selecting a CMOS register and reading it has no effect on
    // memory; bit 7 (NMI disable) stays clear.
    unsafe {
        Port::<u8>::new(0x70).write(reg & 0x7f);
        Port::<u8>::new(0x71).read()
    }
}

fn update_in_progress() -> bool {
    read_register(0x0a) & 0x80 != 0
}

/// (second, minute, hour, day, month, year-in-century, century-or-0).
fn raw_reading() -> [u8; 7] {
    while update_in_progress() {
        core::hint::spin_loop();
    }
    [
        read_register(0x00),
        read_register(0x02),
        read_register(0x04),
        read_register(0x07),
        read_register(0x08),
        read_register(0x09),
        read_register(0x32),
    ]
}

fn from_bcd(v: u8) -> u64 {
    u64::from((v & 0x0f) + (v >> 4) * 10)
}

/// Days from 1970-01-01 to year/month/day (proleptic Gregorian).
fn days_from_civil(year: i64, month: u64, day: u64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Seconds since the Unix epoch, as the RTC tells (UTC assumed, as QEMU
/// presents it by default).  Bounded: gives up agreeing after a few tries.
pub fn read_unix_seconds() -> u64 {
    let mut last = raw_reading();
    for _ in 0..8 {
        let now = raw_reading();
        if now == last {
            break;
        }
        last = now;
    }
    let status_b = read_register(0x0b);
    let bcd = status_b & 0x04 == 0;
    let conv = |v: u8| if bcd { from_bcd(v) } else { u64::from(v) };
    let second = conv(last[0]);
    let minute = conv(last[1]);
    // 12-hour mode keeps the PM flag in bit 7.
    let pm = status_b & 0x02 == 0 && last[2] & 0x80 != 0;
    let mut hour = conv(last[2] & 0x7f);
    if status_b & 0x02 == 0 {
        hour %= 12;
        if pm {
            hour += 12;
        }
    }
    let day = conv(last[3]).max(1);
    let month = conv(last[4]).clamp(1, 12);
    let century = if last[6] != 0 { conv(last[6]) } else { 20 };
    let year = century * 100 + conv(last[5]);
    let days = days_from_civil(year as i64, month, day).max(0) as u64;
    days * 86_400 + hour * 3600 + minute * 60 + second
}
