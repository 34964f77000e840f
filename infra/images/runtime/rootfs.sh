#!/usr/bin/env bash
# rootfs.sh <dir> <executable> [<addon>…] — run inside a Debian + Node build stage (Dockerfile,
# stage runtime-root): assemble in <dir> the whole root filesystem of the runtime images, which are
# FROM scratch: the executable (node), every shared library it and the native addons load (as ldd
# resolves them; the addons themselves ship with the bundle, not here), the
# dynamic loader and its cache, CA certificates, time zone data, and passwd/group entries for
# root and the numeric user the charts run as. No shell, no package manager, no coreutils: a
# container of this image can run node and nothing else.
set -euo pipefail
out=$1 exe=$2; shift 2
[ -s /etc/ssl/certs/ca-certificates.crt ] || { echo "rootfs.sh: the base image has no /etc/ssl/certs/ca-certificates.crt (install Debian's ca-certificates in it)" >&2; exit 1; }
[ -d /usr/share/zoneinfo ] || { echo "rootfs.sh: the base image has no /usr/share/zoneinfo (install Debian's tzdata in it)" >&2; exit 1; }
mkdir -p "$out"
# A file at its own path, symlinks resolved (the loader finds libraries by soname in its default
# directories, so the file's name is all that matters).
take() { mkdir -p "$out$(dirname "$1")" && cp -L "$1" "$out$1"; }
take "$exe"
# Node's official binary keeps its full symbol table (15 MB of the 127); the symbols addons link
# against are in .dynsym, which strip keeps. Skipped where the base has no binutils.
if command -v strip >/dev/null; then strip --strip-all "$out$exe"; else echo "rootfs.sh: no strip here; $exe keeps its symbol table" >&2; fi
for elf in "$exe" "$@"; do
  # Addons built for another libc (npm installs the musl ones too) are not for this image.
  libs=$(ldd "$elf" 2>/dev/null) || { echo "rootfs.sh: skipping $elf (ldd cannot load it here)" >&2; continue; }
  # "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" and "/lib64/ld-linux-x86-64.so.2 (0x…)"
  for lib in $(printf '%s\n' "$libs" | sed -n -e 's/.*=> \(\/[^ ]*\) .*/\1/p' -e 's/^[[:space:]]*\(\/[^ ]*\) .*/\1/p' | sort -u); do
    [ -e "$out$lib" ] || take "$lib"
  done
done
take /etc/ld.so.cache
take /etc/ssl/certs/ca-certificates.crt
# Node and OpenSSL look for the bundle under either name.
mkdir -p "$out/etc/ssl/certs" && ln -sf ca-certificates.crt "$out/etc/ssl/certs/ca-bundle.crt"
# The zones themselves; Debian's posix/ and right/ copies and its zone tables are not needed.
mkdir -p "$out/usr/share/zoneinfo"
(cd /usr/share/zoneinfo && find . -maxdepth 1 -mindepth 1 ! -name posix ! -name right ! -name '*.tab' ! -name leap-seconds.list -exec cp -a {} "$out/usr/share/zoneinfo/" \;)
[ -e /usr/lib/os-release ] && take /usr/lib/os-release && ln -sf ../usr/lib/os-release "$out/etc/os-release"
printf 'root:x:0:0:root:/root:/sbin/nologin\nkreg:x:10001:10001:kreg:/nonexistent:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' >"$out/etc/passwd"
printf 'root:x:0:\nkreg:x:10001:\nnogroup:x:65534:\n' >"$out/etc/group"
# glibc's defaults without this file would ask DNS before /etc/hosts.
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$out/etc/nsswitch.conf"
mkdir -p "$out/tmp" && chmod 1777 "$out/tmp"
# An empty, user-owned /data: a fresh volume mounted there inherits this ownership in Docker, and
# in Kubernetes fsGroup makes the claim writable. The root filesystem itself can be read-only.
mkdir -p "$out/data" && chown 10001:10001 "$out/data"
