#!/bin/sh
# Installs ferry from this unpacked tarball into a prefix; root is not needed.
#
#   ./install.sh                       # into ~/.local (root: /usr/local)
#   ./install.sh --prefix /opt/ferry/@VERSION@ --modulefiles-lua /opt/modulefiles
#   ./install.sh --uninstall --prefix ~/.local
#
# Installs PREFIX/bin/{ferry,ferry-hub}, man pages, bash/zsh/fish
# completions, systemd units and modulefiles (with PREFIX filled in) under
# PREFIX/share/ferry/, and the docs under PREFIX/share/doc/ferry/. Nothing is
# started or enabled. Without installing, the binaries also run in place:
# ./bin/ferry -help.
set -eu

version=@VERSION@
here=$(cd "$(dirname "$0")" && pwd)

usage() {
    cat <<USAGE
usage: $0 [--prefix DIR] [--modulefiles-lua DIR] [--modulefiles-tcl DIR] [--user-unit] [--uninstall]

  --prefix DIR           where to install (default: \$HOME/.local, or /usr/local as root)
  --modulefiles-lua DIR  also put the Lmod modulefile at DIR/ferry/$version.lua
  --modulefiles-tcl DIR  also put the Tcl modulefile at DIR/ferry/$version
  --user-unit            also install the systemd user unit into
                         \${XDG_CONFIG_HOME:-~/.config}/systemd/user/ferryd.service
  --uninstall            remove what an install into this prefix put there
USAGE
}

if [ "$(id -u)" = 0 ]; then prefix=/usr/local; else prefix=${HOME:?HOME is not set}/.local; fi
lua_dir= tcl_dir= user_unit= uninstall=
while [ $# -gt 0 ]; do
    case $1 in
        --prefix) prefix=${2:?--prefix needs a directory}; shift 2 ;;
        --prefix=*) prefix=${1#*=}; shift ;;
        --modulefiles-lua) lua_dir=${2:?--modulefiles-lua needs a directory}; shift 2 ;;
        --modulefiles-tcl) tcl_dir=${2:?--modulefiles-tcl needs a directory}; shift 2 ;;
        --user-unit) user_unit=1; shift ;;
        --uninstall) uninstall=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "install.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
case $prefix in
    /*) ;;
    *) prefix=$(pwd)/$prefix ;;
esac
case $prefix in
    *[\|\&\ \	]* | *\\*) echo "install.sh: the prefix must not contain spaces, tabs, |, & or \\: $prefix" >&2; exit 2 ;;
esac
# No trailing slash, so the paths written into modulefiles and units are clean.
while [ "${prefix%/}" != "$prefix" ] && [ "$prefix" != / ]; do prefix=${prefix%/}; done

user_unit_path=${XDG_CONFIG_HOME:-${HOME:-/nonexistent}/.config}/systemd/user/ferryd.service

# Every installed file, relative to the prefix (the manifest is in the tarball).
files=$(cat "$here/share/ferry/MANIFEST")

if [ -n "$uninstall" ]; then
    for f in $files; do rm -f "$prefix/$f"; done
    rm -f "$prefix/share/ferry/modulefiles/lua/ferry/$version.lua" \
        "$prefix/share/ferry/modulefiles/tcl/ferry/$version"
    [ -z "$lua_dir" ] || rm -f "$lua_dir/ferry/$version.lua"
    [ -z "$tcl_dir" ] || rm -f "$tcl_dir/ferry/$version"
    [ -z "$user_unit" ] || rm -f "$user_unit_path"
    # Empty dirs we may have made; never a non-empty one.
    for d in share/ferry/modulefiles/lua/ferry share/ferry/modulefiles/lua \
        share/ferry/modulefiles/tcl/ferry share/ferry/modulefiles/tcl share/ferry/modulefiles \
        share/ferry/systemd/system share/ferry/systemd/user share/ferry/systemd/examples/ferryd.service.d \
        share/ferry/systemd/examples share/ferry/systemd share/ferry share/doc/ferry; do
        rmdir "$prefix/$d" 2>/dev/null || true
    done
    echo "ferry $version removed from $prefix"
    exit 0
fi

# Copies one file from the tarball, keeping its mode (executables stay so).
put() {
    src=$here/$1
    dst=$prefix/$1
    mkdir -p "$(dirname "$dst")"
    rm -f "$dst.new"
    cp "$src" "$dst.new"
    mv -f "$dst.new" "$dst"
}

# Writes a template with the prefix and version filled in.
fill() {
    mkdir -p "$(dirname "$2")"
    sed -e "s|@PREFIX@|$prefix|g" -e "s|@VERSION@|$version|g" "$1" >"$2.new"
    mv -f "$2.new" "$2"
}

for f in $files; do
    case $f in
        share/ferry/systemd/*) ;;
        *) put "$f" ;;
    esac
done
# The units run the binaries of this prefix.
for f in $files; do
    case $f in
        share/ferry/systemd/*)
            mkdir -p "$(dirname "$prefix/$f")"
            sed -e "s|/usr/bin/ferry|$prefix/bin/ferry|g" "$here/$f" >"$prefix/$f.new"
            mv -f "$prefix/$f.new" "$prefix/$f"
            ;;
    esac
done
lua=$prefix/share/ferry/modulefiles/lua/ferry/$version.lua
tcl=$prefix/share/ferry/modulefiles/tcl/ferry/$version
fill "$here/share/ferry/modulefile-templates/ferry.lua" "$lua"
fill "$here/share/ferry/modulefile-templates/ferry.tcl" "$tcl"
[ -z "$lua_dir" ] || fill "$here/share/ferry/modulefile-templates/ferry.lua" "$lua_dir/ferry/$version.lua"
[ -z "$tcl_dir" ] || fill "$here/share/ferry/modulefile-templates/ferry.tcl" "$tcl_dir/ferry/$version"
if [ -n "$user_unit" ]; then
    mkdir -p "$(dirname "$user_unit_path")"
    cp "$prefix/share/ferry/systemd/user/ferryd.service" "$user_unit_path"
fi

cat <<DONE
ferry $version installed in $prefix

  $prefix/bin/ferry -version
  module use $prefix/share/ferry/modulefiles/lua    # Lmod (or .../tcl for Environment Modules)
  module load ferry
DONE
case ":$PATH:" in
    *":$prefix/bin:"*) ;;
    *) echo "  export PATH=\"$prefix/bin:\$PATH\"    # $prefix/bin is not on your PATH yet" ;;
esac
[ -z "$user_unit" ] || echo "  systemctl --user daemon-reload && systemctl --user enable --now ferryd"
