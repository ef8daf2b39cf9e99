#!/bin/sh
# Runs inside the debootstrapped root (chroot) once, before it becomes the image.
set -eu

# Debian's security and updates suites, like a real bookworm VM.
cat > /etc/apt/sources.list <<'SOURCES'
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SOURCES

# Small hosts: no recommends unless a role asks for them.
cat > /etc/apt/apt.conf.d/90vmmesh-lab <<'APT'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
APT

# Units that have nothing to do in a container.
for unit in getty@tty1.service console-getty.service systemd-udevd.service \
            systemd-udevd-control.socket systemd-udevd-kernel.socket \
            dev-hugepages.mount sys-fs-fuse-connections.mount \
            systemd-remount-fs.service systemd-firstboot.service; do
    ln -sf /dev/null "/etc/systemd/system/${unit}"
done

# A machine id is made at first boot of each container.
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id

# Package lists as a freshly installed VM has them; roles refresh them when
# they are older than their cache_valid_time.
apt-get update -qq
apt-get clean
