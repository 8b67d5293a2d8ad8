#!/usr/bin/env bash
# Builds the tiny QEMU guest the qemu-driver tests boot: Debian's kernel (downloaded, not
# installed) and an initramfs made of static busybox whose init brings up virtio networking,
# prints a marker line on the serial console and serves HTTP on port 80.
# Output: target/test-guest/{vmlinuz,initrd.gz}. Idempotent; needs busybox-static and apt.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/target/test-guest"
if [[ -s "$out/vmlinuz" && -s "$out/initrd.gz" ]]; then
  exit 0
fi
[[ -x /bin/busybox ]] || { echo "build-test-guest: /bin/busybox missing (apt-get install busybox-static)" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
kernel_pkg() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}'; }
pkg="$(kernel_pkg)"
if [[ -z "$pkg" && $(id -u) -eq 0 ]]; then
  apt-get update -qq && pkg="$(kernel_pkg)"
fi
[[ -n "$pkg" ]] || { echo "build-test-guest: cannot find the kernel package (apt-get update?)" >&2; exit 1; }
echo "build-test-guest: downloading $pkg"
apt-get download -qq "$pkg" 2>/dev/null
dpkg -x "$pkg"_*.deb kernel
kver="$(ls kernel/lib/modules)"
mkdir -p "$out" initramfs/bin initramfs/proc initramfs/sys initramfs/dev initramfs/www initramfs/modules
cp kernel/boot/vmlinuz-* "$out/vmlinuz"
cp /bin/busybox initramfs/bin/busybox
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci failover net_failover virtio_net; do
  f="$(find "kernel/lib/modules/$kver" -name "$m.ko*" | head -1)"
  [[ -n "$f" ]] || { echo "build-test-guest: module $m not found" >&2; exit 1; }
  cp "$f" initramfs/modules/
done
cat > initramfs/init <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci failover net_failover virtio_net; do
  insmod /modules/$m.ko 2>/dev/null
done
ip link set lo up
ip link set eth0 up 2>/dev/null && ip addr add 10.0.2.15/24 dev eth0
echo "buoy guest $(hostname) up" > /www/index.html
echo "BUOY-GUEST-READY"
httpd -p 80 -h /www
while true; do sleep 3600; done
INIT
chmod +x initramfs/init
(cd initramfs && find . | /bin/busybox cpio -o -H newc 2>/dev/null | gzip -1 > "$out/initrd.gz")
echo "build-test-guest: $out/vmlinuz and $out/initrd.gz ready"
