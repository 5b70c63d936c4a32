//! Addresses and domains of any bytes; printed mailboxes parse back the same.
//! The checks live in `postel_proto::sim::checks`, where the normal test
//! suite replays this target's corpus through them too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| postel_proto::sim::checks::address(data));
