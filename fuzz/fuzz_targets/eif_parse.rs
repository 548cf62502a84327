//! The EIF reader on arbitrary bytes (parse, describe with signature verification, the
//! signature section parser, the cpio reader and cloister's layout reader): errors with a
//! listed code, never panics. What the cpio reader accepts, the writer writes back, and that
//! reads back with the same entries (and the directories they imply).
#![no_main]

use cloister_common::ErrorCode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = cloister_eif::describe(data) {
        assert!(cloister_eif::CODES.contains(&e.code().as_ref()));
    }
    let _ = cloister_eif::parse(data);
    let _ = cloister_eif::Signature::parse(data);
    if let Err(e) = cloister_eif::image_files(data) {
        assert!(cloister_eif::CODES.contains(&e.code().as_ref()));
    }
    match cloister_eif::cpio::read(data) {
        Ok(entries) => {
            // Whatever it read is a valid set of entries for the writer, and reads back with
            // the directories it implies.
            if let Ok(again) = cloister_eif::cpio::archive(&entries) {
                let back = cloister_eif::cpio::read(&again).expect("the writer's output reads");
                assert!(entries.iter().all(|e| back.contains(e)));
            }
        }
        Err(e) => assert_eq!(e.code(), "EIF-CPIO"),
    }
});
