//! Helpers shared by the fuzz targets: a byte reader for structured inputs,
//! an allocator that remembers the largest single allocation (to check that
//! decoders never buffer more than their maximum), and a reference path
//! normalizer written independently of `ferry-paths`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The system allocator, remembering the largest allocation while armed.
pub struct PeakAlloc;

static ARMED: AtomicBool = AtomicBool::new(false);
static PEAK: AtomicUsize = AtomicUsize::new(0);

impl PeakAlloc {
    fn note(size: usize) {
        if ARMED.load(Ordering::Relaxed) {
            PEAK.fetch_max(size, Ordering::Relaxed);
        }
    }
}

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: PeakAlloc = PeakAlloc;

/// Forgets the largest allocation seen so far.
pub fn reset_peak() {
    PEAK.store(0, Ordering::Relaxed);
}

/// Runs `f` with allocations counted towards [`peak`].
pub fn counted<T>(f: impl FnOnce() -> T) -> T {
    ARMED.store(true, Ordering::Relaxed);
    let out = f();
    ARMED.store(false, Ordering::Relaxed);
    out
}

/// The largest single allocation (bytes) made inside [`counted`] since the
/// last [`reset_peak`].
pub fn peak() -> usize {
    PEAK.load(Ordering::Relaxed)
}

/// Runs `f` and returns its result with the largest single allocation
/// (in bytes) made while it ran.
pub fn peak_alloc<T>(f: impl FnOnce() -> T) -> (T, usize) {
    reset_peak();
    let out = counted(f);
    (out, peak())
}

/// Reads a structured input front to back; past the end every read gives 0.
#[derive(Debug)]
pub struct Bytes<'a> {
    data: &'a [u8],
}

impl<'a> Bytes<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }
    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }
    pub fn rest(&mut self) -> &'a [u8] {
        self.take(self.data.len())
    }
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// Whether `path` (bytes, `/`-separated) has a `..` component.
pub fn has_dotdot(path: &[u8]) -> bool {
    path.split(|b| *b == b'/').any(|c| c == b"..")
}

/// Reference lexical normalization of an absolute path: drops empty and `.`
/// components; `None` if relative or if it has a `..` component.
pub fn normalize(path: &[u8]) -> Option<Vec<u8>> {
    if path.first() != Some(&b'/') || has_dotdot(path) {
        return None;
    }
    let mut out = Vec::with_capacity(path.len());
    for c in path.split(|b| *b == b'/') {
        if c.is_empty() || c == b"." {
            continue;
        }
        out.push(b'/');
        out.extend_from_slice(c);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    Some(out)
}

/// Whether `path` is `base` or lies beneath it, by whole components (both
/// normalized).
pub fn beneath(path: &[u8], base: &[u8]) -> bool {
    if base == b"/" {
        return path.first() == Some(&b'/');
    }
    path == base || (path.starts_with(base) && path.get(base.len()) == Some(&b'/'))
}

/// No control character, so a message stays one honest line in a log.
pub fn is_one_clean_line(text: &str) -> bool {
    !text.chars().any(char::is_control)
}

/// The (home, config dir) pairs the path targets run with, picked by a byte.
pub fn base_dirs(selector: u8) -> (&'static [u8], &'static [u8]) {
    match selector % 4 {
        0 => (b"/home/u", b"/home/u/.ferry"),
        1 => (b"/home/u", b"/etc/ferry"),
        2 => (b"/", b"/.ferry"),
        _ => (b"/home/a b/\xc3\xbc", b"/home/a b/\xc3\xbc/.config/ferry"),
    }
}

/// Splits a path-policy input: the policy text, then `\0`-separated paths
/// to decide.
pub fn policy_input(data: &[u8]) -> (String, Vec<&[u8]>) {
    let mut parts = data.split(|b| *b == 0);
    let text = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    (text, parts.collect())
}

/// What a rule path written in a policy (`~`, `~/x` or `/x`) means under
/// `home`, by the reference normalizer; `None` if it is not usable.
pub fn expected_rule_path(raw: &str, home: &[u8]) -> Option<Vec<u8>> {
    let raw = raw.as_bytes();
    if raw.contains(&0) {
        return None;
    }
    if raw == b"~" {
        return normalize(home);
    }
    if let Some(below) = raw.strip_prefix(b"~/") {
        let mut full = home.to_vec();
        full.push(b'/');
        full.extend_from_slice(below);
        return normalize(&full);
    }
    normalize(raw)
}

/// Checks a parsed policy and its decisions against the documented rules:
/// every rule path normalized (absolute, no `.`/`..`/empty components, no
/// NUL), no two rules alike, and for every path asked about (`queries`,
/// plus paths around each rule and the built-in denies):
/// - `decide` refuses exactly the paths that are relative or have a `..`;
/// - otherwise it judges the normalized path, and its access is what the
///   longest matching rule gives, unless a built-in deny (the config dir,
///   a dot-entry directly under home) covers the path and that rule does
///   not lie inside the denied area;
/// - an allowed path names the rule that allowed it;
/// - every message is one line without control characters.
pub fn check_policy(
    policy: &ferry_paths::Policy,
    home: &[u8],
    config_dir: &[u8],
    queries: &[&[u8]],
) {
    use ferry_paths::Access;
    use std::os::unix::ffi::OsStrExt;
    let bytes = |p: &std::path::Path| p.as_os_str().as_bytes().to_vec();
    let as_path = |b: &[u8]| std::path::Path::new(std::ffi::OsStr::from_bytes(b)).to_path_buf();

    let rules = policy.rules();
    for (i, rule) in rules.iter().enumerate() {
        let p = bytes(&rule.path);
        assert_eq!(
            normalize(&p).as_deref(),
            Some(p.as_slice()),
            "rule {rule:?}"
        );
        assert!(!p.contains(&0));
        assert!(
            rules[..i].iter().all(|r| r.path != rule.path),
            "duplicate rule {rule:?}"
        );
        assert!(is_one_clean_line(&rule.to_string()), "{rule}");
    }

    let mut asked: Vec<Vec<u8>> = queries.iter().map(|q| q.to_vec()).collect();
    for base in rules.iter().map(|r| bytes(&r.path)).chain([
        home.to_vec(),
        config_dir.to_vec(),
        b"/".to_vec(),
    ]) {
        for tail in [&b""[..], b"/x", b"/.hidden/y", b"/../x", b"/./x//"] {
            let mut q = base.clone();
            q.extend_from_slice(tail);
            asked.push(q);
        }
    }

    let depth = |p: &[u8]| p.split(|b| *b == b'/').filter(|c| !c.is_empty()).count();
    for q in &asked {
        let verdict = policy.decide(&as_path(q));
        let Some(path) = normalize(q) else {
            let error = verdict.expect_err("a relative path or one with .. was judged");
            assert!(is_one_clean_line(&error.to_string()), "{error}");
            continue;
        };
        let decision = verdict.unwrap_or_else(|e| panic!("{q:?} not judged: {e}"));
        assert_eq!(bytes(&decision.path), path);

        let user = rules
            .iter()
            .filter(|r| beneath(&path, &bytes(&r.path)))
            .max_by_key(|r| depth(&bytes(&r.path)));
        let mut denies = Vec::new();
        if beneath(&path, config_dir) {
            denies.push(config_dir.to_vec());
        }
        if path != home && beneath(&path, home) {
            let below = &path[if home == b"/" { 1 } else { home.len() + 1 }..];
            let first = below.split(|b| *b == b'/').next().unwrap_or_default();
            if first.first() == Some(&b'.') {
                let mut dot = if home == b"/" {
                    Vec::new()
                } else {
                    home.to_vec()
                };
                dot.push(b'/');
                dot.extend_from_slice(first);
                denies.push(dot);
            }
        }
        let denied = denies
            .iter()
            .any(|d| !user.is_some_and(|u| beneath(&bytes(&u.path), d)));
        let expected = match (denied, user) {
            (true, _) | (false, None) => Access::Deny,
            (false, Some(u)) => u.access,
        };
        assert_eq!(
            decision.access, expected,
            "{q:?}: decided {decision:?}, rules {rules:?}"
        );
        if expected != Access::Deny {
            assert_eq!(decision.rule.as_ref(), user, "the allowing rule");
        }
        assert!(!decision.allows_write() || decision.allows_read());
        assert_eq!(decision.allows_read(), expected != Access::Deny);
        assert!(
            is_one_clean_line(&decision.explain()),
            "{}",
            decision.explain()
        );
        assert!(
            is_one_clean_line(&decision.reason()),
            "{}",
            decision.reason()
        );
    }
}

/// Checks a grantee's view of `policy` through a grant rooted at the
/// first query (an endpoint path, `/~/` the home): every other query is
/// decided no more widely than for the owner, nothing outside the root
/// or under a rule that does not share is readable, nothing is writable
/// through a read-only grant, and every explanation is one clean line.
pub fn check_grant(policy: &ferry_paths::Policy, queries: &[&[u8]]) {
    use ferry_paths::Access;
    use std::os::unix::ffi::OsStrExt;
    let as_path = |b: &[u8]| std::path::Path::new(std::ffi::OsStr::from_bytes(b)).to_path_buf();
    let rank = |a: Access| match a {
        Access::Deny => 0,
        Access::ReadOnly => 1,
        Access::ReadWrite => 2,
    };
    let Some((root, asked)) = queries.split_first() else {
        return;
    };
    for write in [false, true] {
        let narrowed = match policy.for_grant(&as_path(root), write) {
            Ok(narrowed) => narrowed,
            Err(error) => {
                assert!(is_one_clean_line(&error.to_string()), "{error}");
                continue;
            }
        };
        let [limit] = narrowed.share_limits() else {
            panic!("one grant, {:?}", narrowed.share_limits());
        };
        for path in asked.iter().map(|b| as_path(b)) {
            match (policy.decide(&path), narrowed.decide(&path)) {
                (Ok(owner), Ok(grantee)) => {
                    assert!(is_one_clean_line(&grantee.explain()), "{}", grantee.explain());
                    assert!(rank(grantee.access) <= rank(owner.access), "{}", grantee.explain());
                    if grantee.allows_read() {
                        assert!(grantee.path.starts_with(&limit.root), "{}", grantee.explain());
                        assert!(grantee.rule.as_ref().is_some_and(|r| r.sharing), "{}", grantee.explain());
                    }
                    assert!(write || !grantee.allows_write(), "{}", grantee.explain());
                }
                (Err(_), Err(_)) => {}
                (owner, grantee) => panic!("{path:?}: owner {owner:?}, grantee {grantee:?}"),
            }
        }
    }
}
