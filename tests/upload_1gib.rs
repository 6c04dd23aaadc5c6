//! A 1 GiB upload streamed to a file through `stream_post_param`, with the
//! server's memory measured. Its own test binary, so that the process's
//! peak memory is this test's alone.

mod forms_app;

use std::io::{Read, Seek, SeekFrom, Write};
use std::process::Command;
use std::time::Instant;

use handoff::Options;

fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs curl"]
fn streams_a_1_gib_upload_to_disk_in_bounded_memory() {
    const SIZE: u64 = 1 << 30;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("big.bin");
    // A sparse file with markers at a few offsets (a misplaced or lost
    // piece moves or loses them).
    let mut f = std::fs::File::create(&src).unwrap();
    f.set_len(SIZE).unwrap();
    let marks: Vec<u64> = vec![0, 12_345, 64 * 1024 - 3, 300 << 20, SIZE - 16];
    for &m in &marks {
        f.seek(SeekFrom::Start(m)).unwrap();
        f.write_all(format!("MARK{m:012}").as_bytes()).unwrap();
    }
    drop(f);

    let store = tempfile::tempdir().unwrap();
    let addr = forms_app::serve(store.path().to_path_buf(), Options::default());
    let before = vm_hwm_kib();
    let t = Instant::now();
    let out = Command::new("curl")
        .args(["-sS", "-m", "600", "-F", "title=a gibibyte", "-F"])
        .arg(format!("upload=@{}", src.display()))
        .arg(format!("http://{addr}/upload"))
        .output()
        .expect("curl");
    let took = t.elapsed();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("stored {SIZE} bytes; title=a gibibyte\n"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let grew = vm_hwm_kib().saturating_sub(before);
    eprintln!("1 GiB upload streamed to disk in {took:?}; peak RSS grew by {grew} KiB");

    let stored = store.path().join("upload");
    assert_eq!(std::fs::metadata(&stored).unwrap().len(), SIZE);
    let mut f = std::fs::File::open(&stored).unwrap();
    for &m in &marks {
        let mut buf = [0u8; 16];
        f.seek(SeekFrom::Start(m)).unwrap();
        f.read_exact(&mut buf).unwrap();
        assert_eq!(&buf[..], format!("MARK{m:012}").as_bytes(), "marker at {m}");
    }
    assert!(
        grew < 16 * 1024,
        "peak memory grew by {grew} KiB while streaming 1 GiB"
    );
}
