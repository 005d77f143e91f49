//! `cargo xtask dist`: the relocatable tarball and the .deb.
//!
//! Both are staged as plain directory trees from one list of files (the
//! binaries, the rendered man pages and completions, the units, the
//! modulefile templates, the docs), then packed with `tar` and `dpkg-deb`:
//! no packaging tool beyond what a Debian machine has.

use crate::{VERSION, completions, man, read_root_file, root, source_date_epoch, write_file};
use anyhow::{Context, Result, bail};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug)]
pub struct Options {
    pub profile: String,
    pub target: Option<String>,
    pub build: bool,
    pub deb: bool,
    pub out: PathBuf,
}

/// The systemd units: (repo path, where the deb puts them).
const UNITS: &[(&str, &str)] = &[
    (
        "systemd/system/ferryd.service",
        "usr/lib/systemd/system/ferryd.service",
    ),
    (
        "systemd/system/ferryd@.service",
        "usr/lib/systemd/system/ferryd@.service",
    ),
    (
        "systemd/system/ferry-hub.service",
        "usr/lib/systemd/system/ferry-hub.service",
    ),
    (
        "systemd/user/ferryd.service",
        "usr/lib/systemd/user/ferryd.service",
    ),
];
const DROP_IN_EXAMPLE: &str = "systemd/examples/ferryd.service.d/data-roots.conf";
const DOCS: &[&str] = &[
    "README.md",
    "docs/hpc.md",
    "docs/lab-server.md",
    "docs/hub.md",
];
const BINARIES: &[&str] = &["ferry", "ferry-hub"];

pub fn run(opts: &Options) -> Result<()> {
    let root = root();
    if opts.build {
        build(opts)?;
    }
    let bin_dir = binary_dir(opts);
    for bin in BINARIES {
        let path = bin_dir.join(bin);
        if !path.is_file() {
            bail!(
                "{} is missing: build it first (or drop --no-build)",
                path.display()
            );
        }
    }
    let triple = opts.target.clone().unwrap_or_default();
    let arch = triple
        .split('-')
        .next()
        .filter(|a| !a.is_empty())
        .unwrap_or(std::env::consts::ARCH)
        .to_string();
    let musl = triple.contains("musl");

    // Man pages and completions, rendered once for both packages.
    let generated = opts.out.join("generated");
    let man_dir = generated.join("man");
    let completion_dir = generated.join("completions");
    reset_dir(&generated)?;
    man::write_all(&man_dir)?;
    completions::write_all(&completion_dir)?;

    let tarball = tarball(
        opts,
        &root,
        &bin_dir,
        &arch,
        musl,
        &man_dir,
        &completion_dir,
    )?;
    println!("tarball: {}", tarball.display());
    if opts.deb {
        let deb = deb(
            opts,
            &root,
            &bin_dir,
            &arch,
            musl,
            &man_dir,
            &completion_dir,
        )?;
        println!("deb: {}", deb.display());
    }
    Ok(())
}

fn build(opts: &Options) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root()).args([
        "build",
        "--profile",
        &opts.profile,
        "--package",
        "ferry-cli",
        "--package",
        "ferry-hub",
        "--bins",
    ]);
    if let Some(target) = &opts.target {
        cmd.args(["--target", target]);
    }
    run_checked(&mut cmd)
}

/// Where cargo put the binaries for this profile and target.
fn binary_dir(opts: &Options) -> PathBuf {
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let mut dir = target_dir;
    if let Some(target) = &opts.target {
        dir.push(target);
    }
    dir.push(match opts.profile.as_str() {
        "dev" | "test" => "debug",
        "bench" => "release",
        other => other,
    });
    dir
}

/// A tree being staged: copies files in with explicit modes and remembers
/// each one's path relative to the tree.
struct Stage {
    dir: PathBuf,
    files: Vec<String>,
}

impl Stage {
    fn new(dir: PathBuf) -> Result<Self> {
        reset_dir(&dir)?;
        Ok(Self {
            dir,
            files: Vec::new(),
        })
    }

    fn copy(&mut self, from: &Path, to: &str, mode: u32) -> Result<()> {
        let bytes = fs::read(from).with_context(|| format!("cannot read {}", from.display()))?;
        self.write(to, bytes, mode)
    }

    fn write(&mut self, to: &str, contents: impl AsRef<[u8]>, mode: u32) -> Result<()> {
        let path = self.dir.join(to);
        write_file(&path, contents)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot chmod {}", path.display()))?;
        self.files.push(to.to_string());
        Ok(())
    }

    /// Every staged dir gets mode 0755, whatever the umask.
    fn fix_dir_modes(&self) -> Result<()> {
        fn walk(dir: &Path) -> Result<()> {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
                .with_context(|| format!("cannot chmod {}", dir.display()))?;
            for entry in fs::read_dir(dir)? {
                let entry = entry?;
                if entry.file_type()?.is_dir() {
                    walk(&entry.path())?;
                }
            }
            Ok(())
        }
        walk(&self.dir)
    }
}

/// The files both packages ship, at the paths of a `/usr`-like prefix.
fn stage_common(
    stage: &mut Stage,
    root: &Path,
    bin_dir: &Path,
    completion_dir: &Path,
    usr: &str,
    zsh_dir: &str,
) -> Result<()> {
    for bin in BINARIES {
        stage.copy(&bin_dir.join(bin), &format!("{usr}bin/{bin}"), 0o755)?;
    }
    for (dir, name, to) in [
        ("bash", "ferry", "share/bash-completion/completions/ferry"),
        (
            "bash",
            "ferry-hub",
            "share/bash-completion/completions/ferry-hub",
        ),
        ("zsh", "_ferry", &format!("{zsh_dir}/_ferry")),
        ("zsh", "_ferry-hub", &format!("{zsh_dir}/_ferry-hub")),
        (
            "fish",
            "ferry.fish",
            "share/fish/vendor_completions.d/ferry.fish",
        ),
        (
            "fish",
            "ferry-hub.fish",
            "share/fish/vendor_completions.d/ferry-hub.fish",
        ),
    ] {
        stage.copy(
            &completion_dir.join(dir).join(name),
            &format!("{usr}{to}"),
            0o644,
        )?;
    }
    for doc in DOCS {
        let name = Path::new(doc)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(doc);
        stage.copy(
            &root.join(doc),
            &format!("{usr}share/doc/ferry/{name}"),
            0o644,
        )?;
    }
    Ok(())
}

fn tarball(
    opts: &Options,
    root: &Path,
    bin_dir: &Path,
    arch: &str,
    musl: bool,
    man_dir: &Path,
    completion_dir: &Path,
) -> Result<PathBuf> {
    let name = format!(
        "ferry-{VERSION}-{arch}-linux{}",
        if musl { "-musl" } else { "" }
    );
    let staging = opts.out.join("stage");
    let mut stage = Stage::new(staging.join(&name))?;
    stage_common(
        &mut stage,
        root,
        bin_dir,
        completion_dir,
        "",
        "share/zsh/site-functions",
    )?;
    for page in man::pages()? {
        stage.copy(
            &man_dir.join(&page.file),
            &format!("share/man/man{}/{}", page.section, page.file),
            0o644,
        )?;
    }
    for (from, to) in UNITS {
        let to = to
            .strip_prefix("usr/lib/")
            .context("units live under usr/lib")?;
        stage.copy(&root.join(from), &format!("share/ferry/{to}"), 0o644)?;
    }
    stage.copy(
        &root.join(DROP_IN_EXAMPLE),
        "share/ferry/systemd/examples/ferryd.service.d/data-roots.conf",
        0o644,
    )?;
    // install.sh installs exactly the files listed here (and the manifest).
    let mut manifest = stage.files.clone();
    manifest.push("share/ferry/MANIFEST".into());
    stage.write("share/ferry/MANIFEST", manifest.join("\n") + "\n", 0o644)?;
    // Templates and the installer itself are not installed as they are.
    stage.copy(
        &root.join("packaging/modulefiles/lmod/ferry/VERSION.lua"),
        "share/ferry/modulefile-templates/ferry.lua",
        0o644,
    )?;
    stage.copy(
        &root.join("packaging/modulefiles/tcl/ferry/VERSION"),
        "share/ferry/modulefile-templates/ferry.tcl",
        0o644,
    )?;
    let with_version = |text: String| text.replace("@VERSION@", VERSION);
    stage.write(
        "install.sh",
        with_version(read_root_file("packaging/tarball/install.sh")?),
        0o755,
    )?;
    stage.write(
        "README",
        with_version(read_root_file("packaging/tarball/README")?),
        0o644,
    )?;
    stage.fix_dir_modes()?;

    let tarball = opts.out.join(format!("{name}.tar.gz"));
    run_checked(
        Command::new("tar")
            .arg("--sort=name")
            .arg("--owner=0")
            .arg("--group=0")
            .arg("--numeric-owner")
            .arg(format!("--mtime=@{}", source_date_epoch()))
            .arg("-czf")
            .arg(&tarball)
            .arg("-C")
            .arg(&staging)
            .arg(&name),
    )?;
    Ok(tarball)
}

fn deb(
    opts: &Options,
    root: &Path,
    bin_dir: &Path,
    arch: &str,
    musl: bool,
    man_dir: &Path,
    completion_dir: &Path,
) -> Result<PathBuf> {
    let deb_arch = match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let deb_version = format!("{VERSION}-1");
    let name = format!("ferry_{deb_version}_{deb_arch}");
    let mut stage = Stage::new(opts.out.join("deb").join(&name))?;
    stage_common(
        &mut stage,
        root,
        bin_dir,
        completion_dir,
        "usr/",
        "share/zsh/vendor-completions",
    )?;
    for page in man::pages()? {
        // Debian ships man pages compressed (gzip -9n: no name, no time).
        let gz = gzip(&man_dir.join(&page.file))?;
        stage.write(
            &format!("usr/share/man/man{}/{}.gz", page.section, page.file),
            gz,
            0o644,
        )?;
    }
    for (from, to) in UNITS {
        stage.copy(&root.join(from), to, 0o644)?;
    }
    stage.copy(
        &root.join(DROP_IN_EXAMPLE),
        "usr/share/doc/ferry/examples/ferryd.service.d/data-roots.conf",
        0o644,
    )?;
    stage.copy(
        &root.join("packaging/sysusers/ferry.conf"),
        "usr/lib/sysusers.d/ferry.conf",
        0o644,
    )?;
    stage.copy(
        &root.join("packaging/deb/copyright"),
        "usr/share/doc/ferry/copyright",
        0o644,
    )?;
    let payload = stage.files.clone();

    let depends = if musl {
        String::new()
    } else {
        let mut needed = (2, 17);
        for bin in BINARIES {
            needed = needed.max(max_glibc_version(&bin_dir.join(bin))?);
        }
        format!("libc6 (>= {}.{})", needed.0, needed.1)
    };
    let installed_kib: u64 = payload
        .iter()
        .map(|f| fs::metadata(stage.dir.join(f)).map(|m| m.len().div_ceil(1024)))
        .sum::<std::io::Result<u64>>()?;
    let control: String = read_root_file("packaging/deb/control.in")?
        .replace("@DEB_VERSION@", &deb_version)
        .replace("@DEB_ARCH@", deb_arch)
        .replace("@INSTALLED_SIZE@", &installed_kib.to_string())
        .replace("@DEPENDS@", &depends)
        .lines()
        .filter(|l| *l != "Depends: ")
        .map(|l| format!("{l}\n"))
        .collect();
    stage.write("DEBIAN/control", control, 0o644)?;
    for script in ["postinst", "prerm", "postrm"] {
        stage.copy(
            &root.join("packaging/deb").join(script),
            &format!("DEBIAN/{script}"),
            0o755,
        )?;
    }
    let sums = Command::new("md5sum")
        .args(&payload)
        .current_dir(&stage.dir)
        .output()
        .context("cannot run md5sum")?;
    if !sums.status.success() {
        bail!("md5sum failed: {}", String::from_utf8_lossy(&sums.stderr));
    }
    stage.write("DEBIAN/md5sums", sums.stdout, 0o644)?;
    stage.fix_dir_modes()?;

    let deb = opts.out.join(format!("{name}.deb"));
    run_checked(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zxz", "--build"])
            .arg(&stage.dir)
            .arg(&deb)
            .env("SOURCE_DATE_EPOCH", source_date_epoch().to_string()),
    )?;
    Ok(deb)
}

/// The newest `GLIBC_x.y` symbol version a binary needs.
fn max_glibc_version(binary: &Path) -> Result<(u32, u32)> {
    let bytes = fs::read(binary).with_context(|| format!("cannot read {}", binary.display()))?;
    Ok(glibc_versions_in(&bytes).max().unwrap_or((2, 17)))
}

fn glibc_versions_in(bytes: &[u8]) -> impl Iterator<Item = (u32, u32)> + '_ {
    const TAG: &[u8] = b"GLIBC_";
    bytes
        .windows(TAG.len())
        .enumerate()
        .filter(|(_, w)| *w == TAG)
        .filter_map(|(i, _)| {
            let rest = &bytes[i + TAG.len()..];
            let end = rest
                .iter()
                .position(|b| !(b.is_ascii_digit() || *b == b'.'))
                .unwrap_or(rest.len());
            let text = std::str::from_utf8(&rest[..end]).ok()?;
            let mut parts = text.split('.');
            let major = parts.next()?.parse().ok()?;
            let minor = parts.next()?.parse().ok()?;
            Some((major, minor))
        })
}

fn gzip(file: &Path) -> Result<Vec<u8>> {
    let out = Command::new("gzip")
        .args(["-9", "-n", "-c"])
        .arg(file)
        .output()
        .context("cannot run gzip")?;
    if !out.status.success() {
        bail!("gzip {} failed", file.display());
    }
    Ok(out.stdout)
}

fn reset_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

fn run_checked(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_newest_glibc_symbol_version() {
        let bytes = b"\0GLIBC_2.2.5\0GLIBC_2.34\0GLIBC_2.17\0GLIBC_PRIVATE\0";
        assert_eq!(glibc_versions_in(bytes).max(), Some((2, 34)));
        assert_eq!(glibc_versions_in(b"none").max(), None);
    }

    #[test]
    fn dev_profile_binaries_live_in_debug() {
        let opts = Options {
            profile: "dev".into(),
            target: Some("x86_64-unknown-linux-musl".into()),
            build: false,
            deb: false,
            out: PathBuf::new(),
        };
        assert!(binary_dir(&opts).ends_with("x86_64-unknown-linux-musl/debug"));
    }
}
