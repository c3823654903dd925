# Shared set-up for the station's scripts: source it, then call
# ensure_packages and ensure_go (and ensure_node_modules for the tests).
# Everything here is idempotent: a machine that has what it needs is left
# alone, and apt-get runs only when a package is missing.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GO_VERSION=${GO_VERSION:-1.26.8}
export BIN_DIR=${STATION_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/station/bin}

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
	if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# ensure_packages PKG...: install the Debian packages that are missing.
ensure_packages() {
	local missing=()
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	say "installing ${missing[*]}"
	as_root apt-get update -q
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# ensure_go: a Go toolchain of at least GO_VERSION on PATH. Without one, it
# is fetched from the Go module proxy (the toolchain module golang.org/toolchain),
# which is the one network a locked-down factory PC often has.
ensure_go() {
	local v
	for d in /usr/local/go/bin "$HOME/.cache/station/go/bin"; do
		[ -x "$d/go" ] && PATH="$d:$PATH"
	done
	export PATH
	if command -v go >/dev/null; then
		v=$(go env GOVERSION 2>/dev/null | sed 's/^go//')
		if [ "$(printf '%s\n%s\n' "$GO_VERSION" "$v" | sort -V | head -1)" = "$GO_VERSION" ]; then
			return 0
		fi
	fi
	ensure_packages curl unzip ca-certificates
	local proxy=${GOPROXY:-https://proxy.golang.org}
	proxy=${proxy%%,*}
	local dest="$HOME/.cache/station/go" arch
	arch=$(dpkg --print-architecture)
	say "fetching Go $GO_VERSION from $proxy"
	rm -rf "$dest" "$dest.zip"
	mkdir -p "$(dirname "$dest")"
	curl -fsSL -o "$dest.zip" "$proxy/golang.org/toolchain/@v/v0.0.1-go$GO_VERSION.linux-$arch.zip"
	mkdir -p "$dest.tmp"
	unzip -q "$dest.zip" -d "$dest.tmp"
	mv "$dest.tmp/golang.org/toolchain@v0.0.1-go$GO_VERSION.linux-$arch" "$dest"
	rm -rf "$dest.tmp" "$dest.zip"
	chmod +x "$dest"/bin/* "$dest"/pkg/tool/*/* 2>/dev/null || true
	PATH="$dest/bin:$PATH"
	export PATH
}

# The tests' Node.js folders, each with a package.json and the
# package-lock.json that pins it. ESPTOOLJS_DIR holds the simulator's
# interoperability test with Espressif's esptool-js
# (fixtures/sim/esptooljs_test.go); ZPLRENDERERJS_DIR the label's with
# zpl-renderer-js, an independent ZPL renderer
# (station/label/zplrenderer_test.go).
ESPTOOLJS_DIR="$ROOT/fixtures/sim/testdata/esptooljs"
ZPLRENDERERJS_DIR="$ROOT/station/label/testdata/zplrendererjs"

# ensure_node_modules DIR: Node.js 18 or later and npm (Debian's packages
# when either command is missing), then the packages DIR's
# package-lock.json pins, installed with npm ci when DIR/node_modules is
# missing or older than the lock file (npm ci writes
# node_modules/.package-lock.json last).
ensure_node_modules() {
	local dir=$1
	if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
		ensure_packages nodejs npm
	fi
	if ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)'; then
		echo "Node.js $(node --version) is too old for ${dir#"$ROOT"/}: need 18 or later" >&2
		return 1
	fi
	local stamp="$dir/node_modules/.package-lock.json"
	if [ ! -e "$stamp" ] || [ "$dir/package-lock.json" -nt "$stamp" ]; then
		say "installing ${dir#"$ROOT"/}'s node modules (npm ci)"
		(cd "$dir" && npm ci --no-audit --no-fund)
	fi
}

# Packages every build needs: cgo for SQLite.
BUILD_PACKAGES=(gcc libc6-dev pkg-config git ca-certificates libusb-1.0-0-dev)

# Packages the kiosk (Fyne: cgo, OpenGL, X11) needs to build.
KIOSK_PACKAGES=(libgl1-mesa-dev xorg-dev)

# Packages the tests need beyond the build: PostgreSQL for the DMS, and a
# real X server and a screen grabber for the kiosk; for the packages'
# install test, debootstrap, lintian, systemd-analyze, udevadm, and QEMU
# to boot the installed packages; xwininfo for the kiosk session.
TEST_PACKAGES=(procps curl postgresql "${KIOSK_PACKAGES[@]}" xvfb imagemagick qemu-system-arm gdb-multiarch stm32flash bmap-tools umockdev libumockdev-dev dfu-util util-linux mount e2fsprogs zbar-tools dmtx-utils debootstrap lintian systemd udev qemu-system-x86 x11-utils)

# check_no_leftovers MARK: fails, naming them, if processes whose
# environment holds MARK (exported by scripts/test to everything the tests
# start) are still running, and kills them so the next run starts clean.
# Call it with MARK no longer in the environment, so that the commands it
# runs itself do not carry it.
# A test must end every child it starts, also when it fails or times out.
check_no_leftovers() {
	local mark=$1 pid left=()
	# Children get SIGKILL as the test binaries exit; give the kernel a
	# moment to reap them before calling one a leftover.
	for _ in 1 2 3 4 5; do
		left=()
		for pid in $(grep -l -s -a -F "STATION_TEST_RUN=$mark" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3); do
			grep -q -s '^State:.*Z' "/proc/$pid/status" && continue
			left+=("$pid")
		done
		[ ${#left[@]} -eq 0 ] && return 0
		sleep 1
	done
	echo "processes the tests left running (each test must end the children it starts):" >&2
	for pid in "${left[@]}"; do
		printf '  %s %s\n' "$pid" "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-200)" >&2
	done
	kill -KILL "${left[@]}" 2>/dev/null || true
	return 1
}

# build_station: the station binary into BIN_DIR.
build_station() {
	mkdir -p "$BIN_DIR"
	local commit
	commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
	(cd "$ROOT" && go build -ldflags "-X main.version=dev -X main.commit=$commit" -o "$BIN_DIR/station" ./station/cmd/station)
}

# build_kiosk: the kiosk binary (Fyne, cgo) into BIN_DIR.
build_kiosk() {
	mkdir -p "$BIN_DIR"
	(cd "$ROOT" && go build -o "$BIN_DIR/station-kiosk" ./ui/cmd/station-kiosk)
}
