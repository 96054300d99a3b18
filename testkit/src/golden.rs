//! The golden frames of `testdata/frames/`: one file per frame kind holding the frame's bytes
//! in hexadecimal, after `#` comment lines. The codec test holds the encoder to them; the
//! fuzz seed generator turns them into decoder inputs.

use std::path::PathBuf;

/// The folder of the golden frames.
pub fn frames_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/frames")
}

/// Bytes as lowercase hexadecimal, two digits a byte, no separator.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of a golden file's text: its hexadecimal digits, `#` lines and anything that is
/// not a digit left out.
pub fn from_hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.bytes())
        .filter(|b| b.is_ascii_hexdigit())
        .collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

/// Every golden frame, by name (the file's stem), sorted by name.
pub fn golden_frames() -> Vec<(String, Vec<u8>)> {
    let mut frames: Vec<(String, Vec<u8>)> = std::fs::read_dir(frames_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "hex"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, from_hex(&std::fs::read_to_string(&p).unwrap()))
        })
        .collect();
    frames.sort();
    frames
}
