//! The data channel's JSON conversation (`ferry_proto::data::Message`):
//! manifest batches, needs batches and the rest, as the destination and the
//! source parse them, plus the destination's check of a manifest entry's
//! path (`ferry_mover::plan::relative`) and its temporary name.
//!
//! Input: one JSON message body (what follows the type byte of a message
//! frame).
//!
//! Asserts:
//! - decode → encode → decode gives an equal message, and the second
//!   encoding is byte-identical to the first (canonical JSON);
//! - a manifest entry's path is accepted by `plan::relative` exactly when it
//!   is empty, or relative with no `..` component, no leading `.` and no NUL
//!   byte; an accepted path joined to a destination stays beneath it;
//! - the temporary file for an entry lies in the same directory as the
//!   file, is recognised by `plan::is_temp_name`, and fits NAME_MAX.
//!
//! (The `plan` checks need the `mover` feature.)
#![no_main]

use ferry_proto::data::{ChunkSet, Message, Need};
use libfuzzer_sys::fuzz_target;

#[cfg(feature = "mover")]
const DEST: &[u8] = b"/data/dest";

#[cfg(not(feature = "mover"))]
fn check_entry_path(_: &[u8], _: &str) {}

#[cfg(feature = "mover")]
fn check_entry_path(path: &[u8], task_id: &str) {
    use ferry_fuzz::{beneath, has_dotdot, normalize};
    use ferry_mover::plan;
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    let verdict = plan::relative(path);
    // What a peer may name: nothing, or plain names below the item.
    let plain = path.is_empty()
        || (path[0] != b'/'
            && !path.contains(&0)
            && !has_dotdot(path)
            && !path.starts_with(b"./")
            && path != b".");
    assert_eq!(
        verdict.is_ok(),
        plain,
        "plan::relative({:?}) = {verdict:?}",
        String::from_utf8_lossy(path)
    );
    let Ok(rel) = verdict else { return };
    let joined = Path::new(std::ffi::OsStr::from_bytes(DEST)).join(&rel);
    let joined = joined.as_os_str().as_bytes();
    let normal = normalize(joined).expect("a joined path is absolute and has no ..");
    assert!(beneath(&normal, DEST), "{joined:?} escapes {DEST:?}");
    if path.is_empty() {
        return;
    }
    let final_path = Path::new(std::ffi::OsStr::from_bytes(joined));
    let temp = plan::temp_path(final_path, task_id);
    assert_eq!(
        temp.parent(),
        final_path.parent(),
        "temp file in another dir"
    );
    let name = temp.file_name().expect("a temp name").as_bytes();
    assert!(plan::is_temp_name(name));
    assert!(name.len() <= 255, "temp name of {} bytes", name.len());
    assert!(!name.contains(&b'/'));
}

fuzz_target!(|body: &[u8]| {
    let Ok(message) = serde_json::from_slice::<Message>(body) else {
        return;
    };
    let json = serde_json::to_vec(&message).expect("a decoded message encodes");
    let back: Message = serde_json::from_slice(&json).expect("own encoding decodes");
    assert_eq!(back, message, "message round-trip");
    assert_eq!(
        serde_json::to_vec(&back).unwrap(),
        json,
        "encoding not canonical"
    );

    match &message {
        Message::Manifest { entries } => {
            for entry in entries {
                check_entry_path(entry.path.as_bytes(), "3f2a9c1e-task");
            }
        }
        Message::Needs { needs } => {
            for (_, need) in needs {
                if let Need::Send {
                    missing: ChunkSet::Only(list),
                } = need
                {
                    // Indexes survive exactly, order and duplicates included.
                    let again: Need = serde_json::from_value(serde_json::to_value(need).unwrap())
                        .expect("need round-trip");
                    assert_eq!(
                        &again,
                        &Need::Send {
                            missing: ChunkSet::Only(list.clone())
                        }
                    );
                }
            }
        }
        Message::Open(open) => {
            // The capability is opened as received; only its size is bounded.
            let _ = ferry_proto::task::Capability::open(&open.capability);
        }
        _ => {}
    }
});
