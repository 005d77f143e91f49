//! Files over HTTPS through the hub, as users fetch them: alice `curl`s a
//! file of her endpoint with her token (whole, a range, conditionally),
//! bob reaches what alice shared with him and nothing beside it, and a
//! caller with no access learns nothing of what exists.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferry_tests::{Lab, Ran, on_path, run_command, skip};
use sha2::{Digest, Sha256};
use std::fs;
use std::process::Command;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

/// `curl` against the hub, trusting its CA; `-i` so headers come first.
fn curl(lab: &Lab, token: Option<&str>, url: &str, extra: &[&str]) -> Ran {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-i", "--max-time", "120", "--cacert"])
        .arg(lab.hub.ca_cert());
    if let Some(token) = token {
        cmd.arg("-H").arg(format!("Authorization: Bearer {token}"));
    }
    cmd.args(extra).arg(url);
    run_command(&mut cmd)
}

/// Status code, a header's value, and the body of a `curl -i` answer.
fn parts(ran: &Ran) -> (u16, String, String) {
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let mut answer = ran.stdout.as_str();
    // An upload's interim `100 Continue` precedes the answer.
    while answer.starts_with("HTTP/1.1 100") {
        answer = answer.split_once("\r\n\r\n").unwrap().1;
    }
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_string(), body.to_string())
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

#[test]
fn a_file_comes_whole_in_ranges_and_conditionally_and_grantees_stay_inside_their_share() {
    if !on_path("curl") {
        skip("curl is not installed");
        return;
    }
    let lab = Lab::new();
    let project = lab.src.home.join("project");
    fs::create_dir_all(project.join("results")).unwrap();
    let text: String = (0..2000).map(|i| format!("line {i}\n")).collect();
    fs::write(project.join("results/data.txt"), &text).unwrap();
    fs::write(project.join("secret.txt"), b"not shared").unwrap();
    fs::write(
        lab.src.dir.join("config-paths"),
        "~/,0,1\n~/project/results,1,1\n",
    )
    .unwrap();
    assert_eq!(lab.src.run(&["-reload"]).code, Some(0));
    let id = lab.src.endpoint_id();
    let base = format!("{}/api/v1/endpoints/{id}/files", lab.hub.url);
    let url = format!("{base}/~/project/results/data.txt");

    // Whole, with its validators.
    let (status, head, body) = parts(&curl(&lab, Some(&lab.token), &url, &[]));
    assert_eq!(status, 200, "{head}{body}");
    assert_eq!(body, text);
    assert_eq!(
        header(&head, "content-length"),
        Some(text.len().to_string())
    );
    let etag = header(&head, "etag").expect("an etag");
    let modified = header(&head, "last-modified").expect("last-modified");
    // HEAD: the size, no body.
    let (status, head, body) = parts(&curl(&lab, Some(&lab.token), &url, &["-I"]));
    assert_eq!((status, body.as_str()), (200, ""));
    assert_eq!(
        header(&head, "content-length"),
        Some(text.len().to_string())
    );

    // A range, and a suffix range.
    let (status, head, body) = parts(&curl(&lab, Some(&lab.token), &url, &["-r", "100-199"]));
    assert_eq!(status, 206);
    assert_eq!(body, text[100..200]);
    assert_eq!(
        header(&head, "content-range"),
        Some(format!("bytes 100-199/{}", text.len()))
    );
    let (status, _, body) = parts(&curl(&lab, Some(&lab.token), &url, &["-r", "-10"]));
    assert_eq!((status, body.as_str()), (206, &text[text.len() - 10..]));
    // Past the end: 416.
    let past = format!("{}-", text.len() + 5);
    let (status, head, _) = parts(&curl(&lab, Some(&lab.token), &url, &["-r", &past]));
    assert_eq!(status, 416);
    assert_eq!(
        header(&head, "content-range"),
        Some(format!("bytes */{}", text.len()))
    );

    // Conditional: unchanged is 304, by tag or by date.
    let inm = format!("If-None-Match: {etag}");
    let (status, _, body) = parts(&curl(&lab, Some(&lab.token), &url, &["-H", &inm]));
    assert_eq!((status, body.as_str()), (304, ""));
    let ims = format!("If-Modified-Since: {modified}");
    let (status, _, _) = parts(&curl(&lab, Some(&lab.token), &url, &["-H", &ims]));
    assert_eq!(status, 304);
    // If-Range with the current tag honours the range; a stale one gets all.
    let ir = format!("If-Range: {etag}");
    let (status, _, body) = parts(&curl(
        &lab,
        Some(&lab.token),
        &url,
        &["-r", "0-4", "-H", &ir],
    ));
    assert_eq!((status, body.as_str()), (206, "line "));
    // The file changes: the old tag no longer matches.
    let changed = text.replace("line 1\n", "LINE 1\n");
    fs::write(project.join("results/data.txt"), &changed).unwrap();
    let (status, _, body) = parts(&curl(
        &lab,
        Some(&lab.token),
        &url,
        &["-r", "0-4", "-H", &ir],
    ));
    assert_eq!(status, 200);
    assert_eq!(body, changed);
    let (status, head, _) = parts(&curl(&lab, Some(&lab.token), &url, &["-H", &inm]));
    assert_eq!(status, 200);
    assert_ne!(header(&head, "etag"), Some(etag));

    // Missing: 404; no token: 401; a bad token: 401.
    let (status, _, body) = parts(&curl(
        &lab,
        Some(&lab.token),
        &format!("{base}/~/nope"),
        &[],
    ));
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("\"error\""), "{body}");
    let (status, _, _) = parts(&curl(&lab, None, &url, &[]));
    assert_eq!(status, 401);
    let (status, _, _) = parts(&curl(&lab, Some("not-a-token"), &url, &[]));
    assert_eq!(status, 401);

    // Bob: nothing shared yet, so the endpoint does not exist for him.
    lab.hub.add_user("bob", "bobs password 1");
    let bob_token = lab.hub.token("bob");
    let (status, _, body) = parts(&curl(&lab, Some(&bob_token), &url, &[]));
    assert_eq!(status, 404, "{body}");
    assert!(
        !body.contains("data.txt") && !body.contains("src"),
        "{body}"
    );
    // Shared with him: inside he reads, beside it he is refused.
    let out = lab.ferry(&[
        "endpoint",
        "permission",
        "create",
        "src:/~/project/results",
        "--permissions",
        "r",
        "--identity",
        "bob",
    ]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let (status, _, body) = parts(&curl(&lab, Some(&bob_token), &url, &[]));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, changed);
    let outside = format!("{base}/~/project/secret.txt");
    let (status, _, body) = parts(&curl(&lab, Some(&bob_token), &outside, &[]));
    assert_eq!(status, 403, "{body}");
    assert!(!body.contains("not shared\n"), "{body}");
    // Dot-dot out of the share is refused too (curl would fold it: send it raw).
    let escape = format!("{base}/~/project/results/../secret.txt");
    let (status, _, body) = parts(&curl(&lab, Some(&bob_token), &escape, &["--path-as-is"]));
    assert!(
        status == 403 || status == 404 || status == 400,
        "{status} {body}"
    );
    let encoded = format!("{base}/~/project/results/%2e%2e%2fsecret.txt");
    let (status, _, body) = parts(&curl(&lab, Some(&bob_token), &encoded, &["--path-as-is"]));
    assert!(
        status == 403 || status == 404 || status == 400,
        "{status} {body}"
    );

    // The owner's audit log has the reads.
    let audit = lab.ferry(&["endpoint", "audit", "src", "--json"]);
    assert_eq!(audit.code, Some(0), "{audit:?}");
    assert!(audit.stdout.contains("\"read\""), "{}", audit.stdout);
    let _ = LIMIT;
}

/// `ferry get` fetches exactly, into a file or stdout, and resumes a
/// partial download.
#[test]
fn ferry_get_fetches_exactly_and_resumes_a_partial_file() {
    let lab = Lab::new();
    let data: Vec<u8> = ferry_tests::pattern(24 * 1024 * 1024 + 17, 7);
    fs::write(lab.src.home.join("big.bin"), &data).unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let local = out_dir.path().join("copy.bin");
    let ran = lab.ferry(&["get".as_ref(), "src:/~/big.bin".as_ref(), local.as_os_str()]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert_eq!(
        Sha256::digest(fs::read(&local).unwrap()),
        Sha256::digest(&data)
    );
    // A partial download left from an interrupted run continues from
    // where it stopped (the audit log names the range asked for)...
    let head = curl(
        &lab,
        Some(&lab.token),
        &format!("{}/api/v1/endpoints/src/files/~/big.bin", lab.hub.url),
        &["-I"],
    );
    let (status, head, _) = parts(&head);
    assert_eq!(status, 200);
    let etag = header(&head, "etag").unwrap();
    fs::remove_file(&local).unwrap();
    let part = out_dir.path().join("copy.bin.part");
    fs::write(&part, &data[..5_000_000]).unwrap();
    fs::write(out_dir.path().join("copy.bin.part.etag"), &etag).unwrap();
    let ran = lab.ferry(&["get".as_ref(), "src:/~/big.bin".as_ref(), local.as_os_str()]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(!part.exists());
    assert_eq!(
        Sha256::digest(fs::read(&local).unwrap()),
        Sha256::digest(&data)
    );
    let audit = lab.ferry(&["endpoint", "audit", "src", "--json"]);
    assert!(
        audit
            .stdout
            .contains(&format!("https bytes 5000000-{}", data.len() - 1)),
        "{}",
        audit.stdout
    );
    // ...unless the file changed since: then it comes whole, exactly.
    fs::remove_file(&local).unwrap();
    fs::write(&part, vec![0xffu8; 7_000_000]).unwrap();
    fs::write(out_dir.path().join("copy.bin.part.etag"), "\"stale\"").unwrap();
    let ran = lab.ferry(&["get".as_ref(), "src:/~/big.bin".as_ref(), local.as_os_str()]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert_eq!(
        Sha256::digest(fs::read(&local).unwrap()),
        Sha256::digest(&data)
    );
    // To stdout.
    fs::write(lab.src.home.join("small.txt"), b"hello\n").unwrap();
    let ran = lab.ferry(&["get", "src:/~/small.txt", "-"]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert_eq!(ran.stdout, "hello\n");
    // A missing file: one line, non-zero.
    let ran = lab.ferry(&["get", "src:/~/missing", "-"]);
    assert_ne!(ran.code, Some(0), "{ran:?}");
    assert_eq!(ran.stderr.trim().lines().count(), 1, "{ran:?}");
}

/// Random-looking bytes that do not compress or repeat per piece.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The upload temporaries beside `dir`'s files.
fn temporaries(dir: &std::path::Path) -> Vec<(String, u64)> {
    fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().map(|m| m.len()).unwrap_or(0),
            )
        })
        .filter(|(n, _)| n.starts_with(".ferry.") && n.contains("upload"))
        .collect()
}

/// `ferry put` lands a file exactly, and continues after it was killed
/// mid-way; curl uploads in pieces, a wrong digest or a piece out of
/// order is refused, and a read-only grantee cannot write.
#[test]
fn uploads_land_exactly_resume_and_are_checked() {
    if !on_path("curl") {
        skip("curl is not installed");
        return;
    }
    let lab = Lab::new();
    let local_dir = tempfile::tempdir().unwrap();
    let data = noise(160 * 1024 * 1024 + 5, 11);
    let local = local_dir.path().join("up.bin");
    fs::write(&local, &data).unwrap();

    // Killed mid-way: the part that arrived waits, and a second run ends it.
    let mut child = spawn_ferry(
        &lab,
        &[
            "put".as_ref(),
            local.as_os_str(),
            "src:/~/landed.bin".as_ref(),
        ],
    );
    ferry_tests::wait_until(LIMIT, "a first piece to arrive", || {
        temporaries(&lab.src.home)
            .iter()
            .any(|(_, len)| *len >= 32 * 1024 * 1024)
    });
    child.kill().unwrap();
    let _ = child.wait();
    assert!(!lab.src.home.join("landed.bin").exists());
    let partial = temporaries(&lab.src.home);
    assert_eq!(partial.len(), 1, "{partial:?}");
    let ran = lab.ferry(&[
        "put".as_ref(),
        local.as_os_str(),
        "src:/~/landed.bin".as_ref(),
    ]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert_eq!(
        Sha256::digest(fs::read(lab.src.home.join("landed.bin")).unwrap()),
        Sha256::digest(&data)
    );
    assert!(temporaries(&lab.src.home).is_empty());

    // curl, in two pieces under one id.
    let id = lab.src.endpoint_id();
    let url = format!("{}/api/v1/endpoints/{id}/files/~/pieces.txt", lab.hub.url);
    let text = b"0123456789abcdefghij";
    let piece_dir = tempfile::tempdir().unwrap();
    let first = piece_dir.path().join("first");
    let second = piece_dir.path().join("second");
    fs::write(&first, &text[..12]).unwrap();
    fs::write(&second, &text[12..]).unwrap();
    let digest = base64_sha256(text);
    let upload = format!("{url}?upload=abcdef0123456789");
    // Out of order: refused with where it stands.
    let (status, head, _) = parts(&curl(
        &lab,
        Some(&lab.token),
        &upload,
        &[
            "-T",
            second.to_str().unwrap(),
            "-H",
            "Content-Range: bytes 12-19/20",
        ],
    ));
    assert_eq!(status, 409);
    assert_eq!(header(&head, "upload-offset").as_deref(), Some("0"));
    let (status, head, _) = parts(&curl(
        &lab,
        Some(&lab.token),
        &upload,
        &[
            "-T",
            first.to_str().unwrap(),
            "-H",
            "Content-Range: bytes 0-11/20",
        ],
    ));
    assert_eq!(status, 204);
    assert_eq!(header(&head, "upload-offset").as_deref(), Some("12"));
    let (status, head, _) = parts(&curl(&lab, Some(&lab.token), &upload, &["-I"]));
    assert_eq!(status, 204);
    assert_eq!(header(&head, "upload-offset").as_deref(), Some("12"));
    assert!(!lab.src.home.join("pieces.txt").exists());
    let (status, _, body) = parts(&curl(
        &lab,
        Some(&lab.token),
        &upload,
        &[
            "-T",
            second.to_str().unwrap(),
            "-H",
            "Content-Range: bytes 12-19/20",
            "-H",
            &format!("Repr-Digest: sha-256=:{digest}:"),
        ],
    ));
    assert_eq!(status, 201, "{body}");
    assert_eq!(fs::read(lab.src.home.join("pieces.txt")).unwrap(), text);

    // A digest that does not match: nothing lands.
    let wrong = base64_sha256(b"something else");
    let (status, _, body) = parts(&curl(
        &lab,
        Some(&lab.token),
        &format!("{url}2"),
        &[
            "-T",
            first.to_str().unwrap(),
            "-H",
            &format!("Repr-Digest: sha-256=:{wrong}:"),
        ],
    ));
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("SHA-256"), "{body}");
    assert!(!lab.src.home.join("pieces.txt2").exists());

    // A read-only grantee cannot write.
    fs::create_dir_all(lab.src.home.join("shared")).unwrap();
    fs::write(lab.src.dir.join("config-paths"), "~/,0,1\n~/shared,1,1\n").unwrap();
    assert_eq!(lab.src.run(&["-reload"]).code, Some(0));
    lab.hub.add_user("bob", "bobs password 1");
    let bob_token = lab.hub.token("bob");
    let out = lab.ferry(&[
        "endpoint",
        "permission",
        "create",
        "src:/~/shared",
        "--permissions",
        "r",
        "--identity",
        "bob",
    ]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let into_share = format!("{}/api/v1/endpoints/{id}/files/~/shared/x", lab.hub.url);
    let (status, _, body) = parts(&curl(
        &lab,
        Some(&bob_token),
        &into_share,
        &["-T", first.to_str().unwrap()],
    ));
    assert_eq!(status, 403, "{body}");
    assert!(!lab.src.home.join("shared/x").exists());
}

fn base64_sha256(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(bytes))
}

fn sha256_file(path: &std::path::Path) -> Vec<u8> {
    use std::io::Read;
    let mut file = fs::File::open(path).unwrap();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    hasher.finalize().to_vec()
}

/// A 1 GiB file, sparse with random blocks, goes up with `ferry put` and
/// comes back with `ferry get` exactly, each cut off (killed) a quarter of
/// the way and run again: the second run goes on from what arrived.
#[test]
fn a_gibibyte_goes_up_and_comes_back_exactly_across_a_cut() {
    use std::os::unix::fs::FileExt;
    const SIZE: u64 = 1 << 30;
    let lab = Lab::new();
    let local_dir = tempfile::tempdir().unwrap();
    let local = local_dir.path().join("giant.bin");
    let file = fs::File::create(&local).unwrap();
    file.set_len(SIZE).unwrap();
    for (i, at) in (0..SIZE).step_by(64 << 20).enumerate() {
        file.write_all_at(&noise(1 << 20, i as u64 + 3), at + 4096 * i as u64)
            .unwrap();
    }
    drop(file);
    let want = sha256_file(&local);

    let put: [&std::ffi::OsStr; 3] = [
        "put".as_ref(),
        local.as_os_str(),
        "src:/~/giant.bin".as_ref(),
    ];
    let mut cut = spawn_ferry(&lab, &put);
    ferry_tests::wait_until(LIMIT, "a quarter of the upload to arrive", || {
        temporaries(&lab.src.home)
            .iter()
            .any(|(_, len)| *len >= SIZE / 4)
    });
    cut.kill().unwrap();
    let _ = cut.wait();
    let ran = lab.ferry(&put);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let landed = lab.src.home.join("giant.bin");
    assert_eq!(sha256_file(&landed), want);
    assert!(temporaries(&lab.src.home).is_empty());

    let back = local_dir.path().join("back.bin");
    let part = local_dir.path().join("back.bin.part");
    let get: [&std::ffi::OsStr; 3] = [
        "get".as_ref(),
        "src:/~/giant.bin".as_ref(),
        back.as_os_str(),
    ];
    let mut cut = spawn_ferry(&lab, &get);
    ferry_tests::wait_until(LIMIT, "a quarter of the download to arrive", || {
        fs::metadata(&part).is_ok_and(|m| m.len() >= SIZE / 4)
    });
    cut.kill().unwrap();
    let _ = cut.wait();
    let kept = fs::metadata(&part).unwrap().len();
    let ran = lab.ferry(&get);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert_eq!(sha256_file(&back), want);
    let audit = lab.ferry(&["endpoint", "audit", "src", "--json"]);
    assert!(
        audit
            .stdout
            .contains(&format!("https bytes {kept}-{}", SIZE - 1)),
        "the download started again from 0, not from {kept}: {}",
        audit.stdout
    );
}

/// `ferry`, run with `lab`'s user and hub, not waited for.
fn spawn_ferry(lab: &Lab, args: &[&std::ffi::OsStr]) -> std::process::Child {
    Command::new(ferry_tests::ferry_bin())
        .args(args)
        .env_clear()
        .env("HOME", &lab.src.home)
        .env("FERRY_TOKEN", &lab.token)
        .env("FERRY_HUB", &lab.hub.url)
        .env("FERRY_HUB_CA", lab.hub.ca_cert())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits (bounded) for a `ferry` the hub's death cut off; its exit code.
fn cut_off(mut child: std::process::Child) -> Option<i32> {
    let mut code = None;
    ferry_tests::wait_until(LIMIT, "ferry to give up on the dead hub", || {
        code = child.try_wait().unwrap().map(|s| s.code().unwrap_or(-1));
        code.is_some()
    });
    code
}

/// A download and an upload cut off by the hub's kill -9 go on from where
/// they stood once it is back: what arrived is kept on both sides.
#[test]
fn get_and_put_resume_across_a_restart_of_the_hub() {
    use std::os::unix::fs::{FileExt, MetadataExt};
    if !on_path("curl") {
        skip("curl is not installed");
        return;
    }
    let mut lab = Lab::new();
    // Big enough that the hub dies mid-way; sparse, so it is quick to make.
    let size: u64 = 768 << 20;
    let remote = lab.src.home.join("big.bin");
    let file = fs::File::create(&remote).unwrap();
    file.set_len(size).unwrap();
    for i in 0..(size >> 26) {
        file.write_all_at(&noise(1 << 20, i + 5), i << 26).unwrap();
    }
    drop(file);
    let local_dir = tempfile::tempdir().unwrap();
    let local = local_dir.path().join("big.bin");
    let part = local_dir.path().join("big.bin.part");

    let get = spawn_ferry(
        &lab,
        &["get".as_ref(), "src:/~/big.bin".as_ref(), local.as_os_str()],
    );
    ferry_tests::wait_until(LIMIT, "part of the download to arrive", || {
        fs::metadata(&part).is_ok_and(|m| m.len() >= 8 << 20)
    });
    lab.hub.kill();
    assert_ne!(cut_off(get), Some(0), "a download cut off reports failure");
    let kept = fs::metadata(&part).unwrap().len();
    assert!(kept >= 8 << 20 && kept < size, "{kept}");
    lab.hub.serve();
    lab.src.wait_hub_state("connected", LIMIT);
    let ran = lab.ferry(&["get".as_ref(), "src:/~/big.bin".as_ref(), local.as_os_str()]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert_eq!(sha256_file(&local), sha256_file(&remote));
    let audit = lab.ferry(&["endpoint", "audit", "src", "--json"]);
    assert!(
        audit
            .stdout
            .contains(&format!("https bytes {kept}-{}", size - 1)),
        "the download started again from 0, not from {kept}: {}",
        audit.stdout
    );

    // The upload: its pieces wait at the endpoint while the hub is away.
    let up = local_dir.path().join("up.bin");
    fs::write(&up, noise(160 << 20, 21)).unwrap();
    let target = "src:/~/up.bin";
    let put = spawn_ferry(&lab, &["put".as_ref(), up.as_os_str(), target.as_ref()]);
    ferry_tests::wait_until(LIMIT, "a first piece to arrive", || {
        temporaries(&lab.src.home)
            .iter()
            .any(|(_, len)| *len >= 32 << 20)
    });
    lab.hub.kill();
    assert_ne!(cut_off(put), Some(0), "an upload cut off reports failure");
    lab.hub.serve();
    lab.src.wait_hub_state("connected", LIMIT);
    // The hub, back, finds the piece that arrived (the id `ferry put`
    // derives from the target and the file's size and mtime).
    let meta = fs::metadata(&up).unwrap();
    let mut id = Sha256::new();
    id.update(target.as_bytes());
    id.update(format!(
        "\n{}\n{}.{}",
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec()
    ));
    let id: String = id.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let url = format!(
        "{}/api/v1/endpoints/{}/files/~/up.bin?upload={id}",
        lab.hub.url,
        lab.src.endpoint_id()
    );
    let (status, head, _) = parts(&curl(&lab, Some(&lab.token), &url, &["-I"]));
    assert_eq!(status, 204, "{head}");
    let stands: u64 = header(&head, "upload-offset").unwrap().parse().unwrap();
    assert!(stands >= 32 << 20, "{stands}");
    let ran = lab.ferry(&["put".as_ref(), up.as_os_str(), target.as_ref()]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert_eq!(sha256_file(&lab.src.home.join("up.bin")), sha256_file(&up));
    assert!(temporaries(&lab.src.home).is_empty());
}

/// As with `scp` and `cp`, a folder stands for the file's own name in it:
/// `ferry get EP:FILE DIR` and `ferry put FILE EP:DIR/`.
#[test]
fn get_into_a_folder_and_put_into_a_remote_folder_keep_the_name() {
    let lab = Lab::new();
    fs::write(lab.src.home.join("report.txt"), b"quarterly numbers\n").unwrap();
    let here = tempfile::tempdir().unwrap();
    let ran = lab.ferry(&[
        "get".as_ref(),
        "src:/~/report.txt".as_ref(),
        here.path().as_os_str(),
    ]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert_eq!(
        fs::read(here.path().join("report.txt")).unwrap(),
        b"quarterly numbers\n"
    );
    fs::create_dir(lab.src.home.join("inbox")).unwrap();
    let ran = lab.ferry(&[
        "put".as_ref(),
        here.path().join("report.txt").as_os_str(),
        "src:/~/inbox/".as_ref(),
    ]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert_eq!(
        fs::read(lab.src.home.join("inbox/report.txt")).unwrap(),
        b"quarterly numbers\n"
    );
}
