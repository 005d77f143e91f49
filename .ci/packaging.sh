#!/usr/bin/env bash
# Packaging CI for ferry: builds the tarball and the .deb with `cargo xtask
# dist`, then checks what users and admins get from them on this machine:
# man pages render, completions complete, systemd-analyze verifies every
# unit, both module systems load the modulefiles, the tarball installs
# without root, the .deb installs, creates its accounts, starts nothing, and
# removes and purges cleanly.
#
#   bash .ci/packaging.sh                     # debug binaries: a quick check
#   bash .ci/packaging.sh --profile release   # what a release ships
#
# Run as root on a fresh Debian-12-like machine, from anywhere in the repo,
# after the main CI built the workspace. Installs what it needs; idempotent.
# Leaves the packages in target/dist/.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

profile=dev
while [ $# -gt 0 ]; do
  case $1 in
    --profile) profile=${2:?--profile needs a cargo profile}; shift 2 ;;
    --release) profile=release; shift ;;
    *) echo "usage: $0 [--profile dev|release]" >&2; exit 2 ;;
  esac
done

section() { printf '\n== %s\n' "$*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
started=$(date +%s)

if [ "$(id -u)" != 0 ]; then
  fail "run as root: this installs packages and a .deb"
fi

section "tools (apt)"
export DEBIAN_FRONTEND=noninteractive
# lmod and environment-modules conflict in Debian: install lmod now and swap
# to environment-modules for its own check below.
needed=(lmod man-db groff-base zsh fish bash-completion util-linux rpm)
missing=()
for pkg in "${needed[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
echo "ok: ${needed[*]}"

work=$(mktemp -d /tmp/ferry-packaging.XXXXXX)
chmod 755 "$work"
cleanup() {
  rm -rf "$work" /etc/systemd/system/ferryd.service.d/ci-data-roots.conf
  rmdir /etc/systemd/system/ferryd.service.d 2>/dev/null || true
}
trap cleanup EXIT

section "build: cargo xtask dist --profile $profile"
cargo xtask dist --profile "$profile"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
tarball=$repo/target/dist/ferry-$version-$(uname -m)-linux.tar.gz
deb=$(ls "$repo"/target/dist/ferry_"$version"-*_*.deb)
[ -f "$tarball" ] || fail "no tarball at $tarball"
[ -f "$deb" ] || fail "no .deb in target/dist"
man_dir=$repo/target/dist/generated/man
completions=$repo/target/dist/generated/completions

section "man pages render without warnings"
for page in "$man_dir"/ferry.1 "$man_dir"/ferry-hub.8 "$man_dir"/config-paths.5; do
  warnings=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l -Tutf8 "$page" 2>&1 >/dev/null || true)
  [ -z "$warnings" ] || fail "$page: $warnings"
  text=$(LC_ALL=C.UTF-8 MANWIDTH=80 MANPAGER=cat man -l "$page" 2>/dev/null)
  grep -q "SEE ALSO" <<<"$text" || fail "$page does not render"
  echo "ok: $(basename "$page")"
done
synopsis=$(LC_ALL=C.UTF-8 MANWIDTH=200 MANPAGER=cat man -l "$man_dir/ferry.1" | sed -n '/^SYNOPSIS/,/^DESCRIPTION/p')
grep -q -- "ferry -start \[-dir DIR\] \[-detach\]" <<<"$synopsis" || fail "ferry(1) SYNOPSIS lacks the one-dash spelling: $synopsis"
if grep -q -- "--dir\|ferry start" <<<"$synopsis"; then fail "ferry(1) SYNOPSIS shows clap's internal spelling"; fi
echo "ok: ferry(1) shows the contract's one-dash spelling"

section "completions"
bash -n "$completions/bash/ferry" && bash -n "$completions/bash/ferry-hub"
zsh -n "$completions/zsh/_ferry" && zsh -n "$completions/zsh/_ferry-hub"
fish --no-execute "$completions/fish/ferry.fish" && fish --no-execute "$completions/fish/ferry-hub.fish"
# bash: what a user gets on TAB.
bash_complete() {
  bash -c 'source /usr/share/bash-completion/bash_completion; source "$1"; shift
    COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
    _ferry; printf "%s\n" "${COMPREPLY[@]}"' _ "$completions/bash/ferry" "$@"
}
got=$(bash_complete ferry -st | sort | tr '\n' ' ')
[ "$got" = "-start -status -stop " ] || fail "bash: 'ferry -st<TAB>' gave '$got'"
got=$(bash_complete ferry -start -de | sort | tr '\n' ' ')
[ "$got" = "-debug -detach " ] || fail "bash: 'ferry -start -de<TAB>' gave '$got'"
got=$(bash_complete ferry -dir /tm)
[ "$got" = "/tmp" ] || fail "bash: 'ferry -dir /tm<TAB>' gave '$got'"
got=$(fish -c "source $completions/fish/ferry.fish; complete -C'ferry -st'" | cut -f1 | sort | tr '\n' ' ')
[ "$got" = "-start -status -stop " ] || fail "fish: 'ferry -st<TAB>' gave '$got'"
echo "ok: bash, zsh and fish scripts parse; bash and fish offer -start -status -stop"

section "install the .deb: $(basename "$deb")"
dpkg -i "$deb"
for account in ferry ferry-hub; do
  entry=$(getent passwd "$account") || fail "no account $account"
  case $entry in
    *:/var/lib/$account:/usr/sbin/nologin) echo "ok: $entry" ;;
    *) fail "account $account looks wrong: $entry" ;;
  esac
done
[ "$(stat -c '%U %a' /var/lib/ferry)" = "ferry 750" ] || fail "/var/lib/ferry: $(stat -c '%U %a' /var/lib/ferry)"
[ "$(stat -c '%U %a' /var/lib/ferry-hub)" = "ferry-hub 700" ] || fail "/var/lib/ferry-hub: $(stat -c '%U %a' /var/lib/ferry-hub)"
for f in /usr/bin/ferry /usr/bin/ferry-hub \
  /usr/lib/systemd/system/ferryd.service /usr/lib/systemd/system/ferryd@.service \
  /usr/lib/systemd/system/ferry-hub.service /usr/lib/systemd/user/ferryd.service \
  /usr/lib/sysusers.d/ferry.conf /usr/share/man/man1/ferry.1.gz /usr/share/man/man8/ferry-hub.8.gz \
  /usr/share/man/man5/config-paths.5.gz /usr/share/bash-completion/completions/ferry \
  /usr/share/zsh/vendor-completions/_ferry /usr/share/fish/vendor_completions.d/ferry.fish \
  /usr/share/doc/ferry/hpc.md /usr/share/doc/ferry/examples/ferryd.service.d/data-roots.conf; do
  [ -e "$f" ] || fail "$f is not installed"
done
echo "ok: binaries, units, man pages, completions, docs in place"
if ls /etc/systemd/system/*.wants/ferry* /etc/systemd/user/*.wants/ferry* >/dev/null 2>&1; then
  fail "the package enabled a unit"
fi
echo "ok: no unit enabled (and no systemd running here to start one)"
ferry -version | grep -qx "ferry $version" || fail "ferry -version: $(ferry -version)"
ferry-hub --version | grep -q "$version" || fail "ferry-hub --version: $(ferry-hub --version)"
man -w ferry >/dev/null && man -w 5 config-paths >/dev/null && man -w 8 ferry-hub >/dev/null
echo "ok: ferry -version, ferry-hub --version, man -w ferry / config-paths / ferry-hub"

section "systemd-analyze verify (installed units)"
systemd-analyze verify /usr/lib/systemd/system/ferryd.service \
  /usr/lib/systemd/system/ferryd@.service /usr/lib/systemd/system/ferry-hub.service
systemd-analyze verify /usr/lib/systemd/system/ferryd@lab.service
XDG_RUNTIME_DIR=$work systemd-analyze --user verify /usr/lib/systemd/user/ferryd.service
# The documented drop-in, applied.
mkdir -p /etc/systemd/system/ferryd.service.d
cp /usr/share/doc/ferry/examples/ferryd.service.d/data-roots.conf /etc/systemd/system/ferryd.service.d/ci-data-roots.conf
systemd-analyze verify ferryd.service
rm /etc/systemd/system/ferryd.service.d/ci-data-roots.conf
rmdir /etc/systemd/system/ferryd.service.d 2>/dev/null || true
for unit in ferryd.service ferry-hub.service; do
  exposure=$(systemd-analyze security --offline=yes "/usr/lib/systemd/system/$unit" 2>/dev/null |
    sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p')
  [ -n "$exposure" ] || fail "no exposure level for $unit"
  awk -v e="$exposure" 'BEGIN { exit !(e <= 2.5) }' || fail "$unit: exposure $exposure > 2.5"
  echo "ok: $unit verifies; systemd-analyze security exposure $exposure"
done

section "the daemon as the service account"
out=$(runuser -u ferry -- env HOME=/var/lib/ferry ferry -start -dir /var/lib/ferry/.ferry-ci-empty 2>&1) && rc=0 || rc=$?
[ "$rc" = 1 ] || fail "ferry -start on a dir not set up exited $rc: $out"
grep -q "not set up" <<<"$out" || fail "ferry -start on a dir not set up said: $out"
echo "ok: refuses with exit 1: $out"
# A set-up dir (the files `ferry -setup` writes, pointing at a hub nothing
# serves): the account can run the daemon in its home, and -status/-stop work.
ci_dir=/var/lib/ferry/.ferry-ci
runuser -u ferry -- install -d -m 0700 "$ci_dir"
runuser -u ferry -- sh -c "umask 077
  printf 'id = \"00000000-0000-4000-8000-0000000000c1\"\nname = \"ci\"\nhub_url = \"https://127.0.0.1:9\"\n' > $ci_dir/endpoint.toml
  for f in endpoint.key endpoint.crt hub-ca.crt; do echo placeholder > $ci_dir/\$f; done
  echo '/srv/ferry,0,1' > $ci_dir/config-paths"
runuser -u ferry -- env HOME=/var/lib/ferry ferry -start -detach -dir "$ci_dir"
status=$(ferry -status -dir "$ci_dir") || fail "ferry -status (as root) failed: $status"
grep -q "^Hub: " <<<"$status" || fail "ferry -status said: $status"
runuser -u ferry -- env HOME=/var/lib/ferry ferry -stop -dir "$ci_dir"
ferry -status -dir "$ci_dir" >/dev/null 2>&1 && rc=0 || rc=$?
[ "$rc" = 3 ] || fail "ferry -status after -stop exited $rc, not 3"
echo "ok: ferry -start -detach as ferry, -status as root ($(head -1 <<<"$status")), -stop"
rm -rf "$ci_dir" /var/lib/ferry/.ferry-ci-empty

section "tarball: install without root"
home=$work/home
install -d -o 65534 -g 65534 "$home"
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups env -i HOME="$home" PATH=/usr/bin:/bin LC_ALL=C.UTF-8 "$@"; }
as_nobody tar -xzf "$tarball" -C "$home"
unpacked=$home/$(basename "$tarball" .tar.gz)
as_nobody "$unpacked/bin/ferry" -version | grep -qx "ferry $version" || fail "ferry -version in place"
prefix=$home/prefix
as_nobody "$unpacked/install.sh" --prefix "$prefix" \
  --modulefiles-lua "$home/modulefiles/lua" --modulefiles-tcl "$home/modulefiles/tcl"
as_nobody "$prefix/bin/ferry" -version | grep -qx "ferry $version" || fail "installed ferry -version"
as_nobody "$prefix/bin/ferry-hub" --version | grep -q "$version" || fail "installed ferry-hub --version"
as_nobody env MANPAGER=cat MANWIDTH=80 man -l "$prefix/share/man/man1/ferry.1" | grep -q "config-paths(5)" ||
  fail "man -l on the installed ferry.1"
as_nobody env MANPATH="$prefix/share/man:" man -w config-paths >/dev/null || fail "man -w config-paths in the prefix"
grep -qx "ExecStart=$prefix/bin/ferry -start -dir /var/lib/ferry/.ferry" "$prefix/share/ferry/systemd/system/ferryd.service" ||
  fail "install.sh did not point the units at $prefix/bin"
MANPATH="$prefix/share/man:" systemd-analyze verify "$prefix/share/ferry/systemd/system/ferryd.service" \
  "$prefix/share/ferry/systemd/system/ferry-hub.service"
[ "$(stat -c %U "$prefix/bin/ferry")" = nobody ] || fail "installed files should belong to the installing user"
echo "ok: installed as nobody into $prefix; ferry -version, man -l, units point at $prefix/bin"

section "modulefiles: Lmod"
module_check() { # init-script modulefile-dir
  as_nobody bash --noprofile --norc -c '
    set -e
    source "$1"
    module use "$2"
    help=$(module help ferry 2>&1)
    for cmd in "ferry -setup" "ferry -start &" "ferry -stop"; do
      grep -qF -- "$cmd" <<<"$help" || { echo "module help lacks $cmd: $help"; exit 1; }
    done
    module load ferry
    [ "$(command -v ferry)" = "$3/bin/ferry" ] || { echo "ferry is $(command -v ferry), not from $3"; exit 1; }
    ferry -version
    man -w ferry | grep -q "^$3/" || { echo "MANPATH does not reach the prefix: $MANPATH"; exit 1; }
    man -w bash >/dev/null 2>&1 || man -w ls >/dev/null || { echo "system man pages unreachable: MANPATH=$MANPATH"; exit 1; }
    complete -p ferry >/dev/null || { echo "no bash completion for ferry"; exit 1; }
    module unload ferry
    if [ "$(command -v ferry)" = "$3/bin/ferry" ]; then echo "$3/bin still on PATH after unload"; exit 1; fi
  ' _ "$@"
}
module_check /usr/share/lmod/lmod/init/bash "$home/modulefiles/lua" "$prefix"
module_check /usr/share/lmod/lmod/init/bash "$prefix/share/ferry/modulefiles/lua" "$prefix"
echo "ok: Lmod loads ferry/$version.lua; ferry -version through it"

section "modulefiles: Environment Modules"
apt-get install -y -qq environment-modules >/dev/null # replaces lmod (they conflict)
module_check /usr/share/modules/init/bash "$home/modulefiles/tcl" "$prefix"
module_check /usr/share/modules/init/bash "$prefix/share/ferry/modulefiles/tcl" "$prefix"
echo "ok: Environment Modules loads ferry/$version; ferry -version through it"
apt-get install -y -qq lmod >/dev/null # back to the state the next run expects

section "tarball: uninstall"
as_nobody "$unpacked/install.sh" --uninstall --prefix "$prefix" \
  --modulefiles-lua "$home/modulefiles/lua" --modulefiles-tcl "$home/modulefiles/tcl"
left=$(find "$prefix" "$home/modulefiles" -type f)
[ -z "$left" ] || fail "install.sh --uninstall left: $left"
echo "ok: nothing left in $prefix"

section "remove and purge the .deb"
dpkg -r ferry
for f in /usr/bin/ferry /usr/bin/ferry-hub /usr/lib/systemd/system/ferryd.service /usr/share/man/man1/ferry.1.gz; do
  [ ! -e "$f" ] || fail "$f left after dpkg -r"
done
dpkg --purge ferry
if dpkg-query -W -f='${Status}' ferry 2>/dev/null | grep -q installed; then fail "ferry still known to dpkg"; fi
[ ! -e /var/lib/ferry ] || fail "/var/lib/ferry left after purge although empty: $(ls -A /var/lib/ferry)"
echo "ok: removed and purged; the accounts stay (as documented)"

section "RPM spec parses"
if command -v rpmspec >/dev/null; then
  rpmspec -P packaging/rpm/ferry.spec >/dev/null
  echo "ok: $(rpmspec -q packaging/rpm/ferry.spec)"
else
  echo "skipped: no rpmspec"
fi

section "packaging passed in $(($(date +%s) - started))s: $(basename "$tarball"), $(basename "$deb")"
