#!/usr/bin/env bash
# Build the systemd-capable Debian bookworm base image that the Molecule
# scenarios run on, without any container registry:
#   debootstrap (minbase) -> extra CA certificates -> docker import.
# The image is reused when present. Set AETHERLINK_BASE_IMAGE to the name of
# an image from a registry to skip the build entirely (it must already exist
# locally or be pullable by docker).
set -euo pipefail

image="${AETHERLINK_BASE_IMAGE:-aetherlink/debian-systemd:bookworm}"
suite="${AETHERLINK_BASE_SUITE:-bookworm}"
mirror="${AETHERLINK_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
packages="systemd,systemd-sysv,python3,python3-apt,ca-certificates,curl,iproute2,dbus,procps"

if docker image inspect "$image" >/dev/null 2>&1; then
  echo "build-image: $image present, reused"
  exit 0
fi
if [[ -n "${AETHERLINK_BASE_IMAGE:-}" ]]; then
  echo "build-image: AETHERLINK_BASE_IMAGE=$image is not present locally; pulling it"
  docker pull "$image"
  exit 0
fi

command -v debootstrap >/dev/null || { echo "build-image: debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }

work="$(mktemp -d /var/tmp/aetherlink-rootfs.XXXXXX)"
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"

echo "build-image: debootstrap $suite into $rootfs"
debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -n 40 "$work/debootstrap.log" >&2
  exit 1
}

# Trust the same extra CA certificates as the build machine, so HTTPS from the
# containers works behind the same proxies.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
  chroot "$rootfs" update-ca-certificates >/dev/null
fi

# Same apt sources as debootstrap used, plus the updates suite.
cat >"$rootfs/etc/apt/sources.list" <<SOURCES
deb $mirror $suite main
deb $mirror $suite-updates main
SOURCES

# Lean systemd: no getty or udev noise inside containers.
for unit in getty.target systemd-udevd.service systemd-udev-trigger.service \
            systemd-remount-fs.service sys-kernel-debug.mount; do
  chroot "$rootfs" systemctl mask "$unit" >/dev/null 2>&1 || true
done
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
# An old mtime on the (empty) lists tells apt clients the cache is stale.
touch -d "2000-01-01" "$rootfs/var/lib/apt/lists"
: >"$rootfs/etc/machine-id"

echo "build-image: importing as $image"
tar -C "$rootfs" -c . | docker import \
  --change 'CMD ["/lib/systemd/systemd"]' \
  --change 'ENV container=docker' \
  - "$image" >/dev/null
echo "build-image: $image built"
