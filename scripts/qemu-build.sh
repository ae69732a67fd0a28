#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Build Debian 12's QEMU 7.2 with the project's vhost-pci device
# (qemu/patches/*.patch) and link qemu-system-x86_64 into build/qemu/.
#
#   scripts/qemu-build.sh [--check]
#
# Steps, each skipped when already done:
#   1. a deb-src entry for bookworm (+ -updates, -security), apt-get update;
#   2. the build packages of scripts/qemu-build-packages.txt;
#   3. the cache key: Debian's source version of qemu + a hash of the
#      patches, this script's configure line and the protocol header;
#   4. cache hit: $VPCI_QEMU_CACHE/<key>/qemu-system-x86_64 exists -> link it;
#   5. otherwise apt-get source qemu (Debian's patches applied on extract),
#      apply ours, configure minimally, ninja qemu-system-x86_64 only.
# The cache lives outside the clone (default /var/cache/vhost-pci/qemu) so a
# second clone or CI run on the same machine reuses it; a lock serialises
# concurrent builds.  --check: exit 0 if build/qemu/qemu-system-x86_64 is
# current (cache hit possible without network), 1 otherwise; changes nothing.
#
# Environment: VPCI_QEMU_CACHE (cache root), JOBS (ninja -j, default 2),
# VPCI_BUILD (the clone's build directory).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
build=${VPCI_BUILD:-$repo/build}
cache_root=${VPCI_QEMU_CACHE:-/var/cache/vhost-pci/qemu}
jobs=${JOBS:-2}
out_dir=$build/qemu
link=$out_dir/qemu-system-x86_64
src_list=/etc/apt/sources.list.d/vhost-pci-src.sources

# Minimal: TCG for the guests here, KVM where it works, vhost-user for
# VM1's side, virtfs for the runner's 9p root.  --prefix=/usr and Debian's
# firmware path so the binary finds bios-256k.bin, kvmvapic.bin, ... from
# the installed qemu-system-data/seabios/ipxe-qemu packages.
configure_args=(
	--prefix=/usr
	--firmwarepath=/usr/share/qemu:/usr/share/seabios:/usr/lib/ipxe/qemu
	--target-list=x86_64-softmmu
	--without-default-features
	--enable-kvm --enable-tcg
	--enable-vhost-user --enable-vhost-kernel
	--enable-attr --enable-cap-ng --enable-virtfs
	--disable-docs
)

log() { echo "qemu-build: $*"; }

sudo=()
if [ "$(id -u)" -ne 0 ]; then
	sudo=(sudo)
fi

newest_source_version() {
	# apt-get source takes the highest version any deb-src suite offers
	apt-cache showsrc qemu 2>/dev/null | sed -n 's/^Version: //p' | sort -u |
		{ best=""; while read -r v; do
			if [ -z "$best" ] || dpkg --compare-versions "$v" gt "$best"; then best=$v; fi
		  done; echo "$best"; }
}

patch_hash() {
	{
		cat "$repo"/qemu/patches/*.patch
		cat "$repo/qemu/vhost-pci-protocol.h"
		printf '%s\n' "${configure_args[@]}"
	} | sha256sum | cut -c1-12
}

ensure_deb_src() {
	if [ -n "$(newest_source_version)" ]; then
		return
	fi
	if [ "${1:-}" = --check ]; then
		log "no deb-src entry for qemu"
		exit 1
	fi
	log "adding $src_list and running apt-get update"
	"${sudo[@]}" tee "$src_list" >/dev/null <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
	"${sudo[@]}" apt-get update -q
	if [ -z "$(newest_source_version)" ]; then
		log "apt-cache showsrc qemu still finds nothing"
		exit 1
	fi
}

ensure_packages() {
	local pkgs missing=()
	mapfile -t pkgs < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$here/qemu-build-packages.txt")
	for p in "${pkgs[@]}"; do
		if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
			missing+=("$p")
		fi
	done
	[ ${#missing[@]} -eq 0 ] && return
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
}

link_binary() {
	mkdir -p "$out_dir"
	ln -sfn "$1" "$link"
	log "$link -> $1"
}

check=""
[ "${1:-}" = --check ] && check=--check

ensure_deb_src $check
version=$(newest_source_version)
key="${version//[:~]/_}-$(patch_hash)"
dir=$cache_root/$key
# QEMU 7.2 is relocatable: it looks for its data and firmware relative to its
# own directory (../share/qemu, ../share/seabios, ../lib/ipxe/qemu from
# bin/), so the binary sits in a usr/ tree whose data directories link to
# Debian's.
bin=$dir/usr/bin/qemu-system-x86_64

if [ -n "$check" ]; then
	[ -x "$bin" ] && [ "$(readlink "$link" 2>/dev/null)" = "$bin" ] && exit 0
	exit 1
fi

if [ -x "$bin" ]; then
	log "cache hit: $key"
	link_binary "$bin"
	exit 0
fi

ensure_packages
"${sudo[@]}" mkdir -p "$cache_root"
if [ ${#sudo[@]} -gt 0 ]; then
	"${sudo[@]}" chown "$(id -u):$(id -g)" "$cache_root"
fi

exec 9>"$cache_root/.lock"
flock 9
if [ -x "$bin" ]; then # built by someone else while we waited
	log "cache hit after waiting: $key"
	link_binary "$bin"
	exit 0
fi

log "cold build of qemu $version with $(ls "$repo"/qemu/patches/*.patch | wc -l) patch(es) into $dir"
start=$(date +%s)
rm -rf "$dir.tmp"
mkdir -p "$dir.tmp/src"
(
	cd "$dir.tmp/src"
	# Unsandboxed download as root is fine: the directory is ours.
	apt-get source -q --only-source "qemu=$version" 2>&1 | tail -n 3
)
srcdir=$(find "$dir.tmp/src" -mindepth 1 -maxdepth 1 -type d -name 'qemu-*' | head -n 1)
[ -n "$srcdir" ] || { log "apt-get source produced no qemu-* directory"; exit 1; }
for p in "$repo"/qemu/patches/*.patch; do
	log "applying $(basename "$p")"
	patch -d "$srcdir" -p1 -s --forward < "$p"
done
if ! cmp -s "$srcdir/include/hw/misc/vhost-pci-protocol.h" "$repo/qemu/vhost-pci-protocol.h"; then
	log "qemu/vhost-pci-protocol.h differs from the patch's include/hw/misc/vhost-pci-protocol.h"
	exit 1
fi
mkdir -p "$dir.tmp/build"
(
	cd "$dir.tmp/build"
	"$srcdir/configure" "${configure_args[@]}" >configure.log 2>&1 ||
		{ tail -n 20 configure.log; exit 1; }
	ninja -j"$jobs" qemu-system-x86_64 >ninja.log 2>&1 ||
		{ grep -E 'error|FAILED' ninja.log | head -n 20; exit 1; }
)
mkdir -p "$dir.tmp/usr/bin" "$dir.tmp/usr/share" "$dir.tmp/usr/lib/ipxe"
cp "$dir.tmp/build/qemu-system-x86_64" "$dir.tmp/usr/bin/qemu-system-x86_64"
ln -sfn /usr/share/qemu "$dir.tmp/usr/share/qemu"
ln -sfn /usr/share/seabios "$dir.tmp/usr/share/seabios"
ln -sfn /usr/lib/ipxe/qemu "$dir.tmp/usr/lib/ipxe/qemu"
"$dir.tmp/usr/bin/qemu-system-x86_64" -device help 2>/dev/null | grep -q '"vhost-pci"' ||
	{ log "the built QEMU has no vhost-pci device"; exit 1; }
"$dir.tmp/usr/bin/qemu-system-x86_64" -L help 2>/dev/null | head -n 1 | grep -q '/share/qemu$' ||
	{ log "the built QEMU does not look in usr/share/qemu"; exit 1; }
echo "$version" >"$dir.tmp/debian-version"
rm -rf "$dir"
mv "$dir.tmp" "$dir"
log "built in $(( $(date +%s) - start )) s"
link_binary "$bin"
