//! BDAT content, one chunk against pieces; never more than the limit kept.
//! The checks live in `postel_proto::sim::checks`, where the normal test
//! suite replays this target's corpus through them too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| postel_proto::sim::checks::bdat(data));
