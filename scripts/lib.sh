# Shared set-up for the station's scripts: source it, then call
# ensure_packages and ensure_go. Everything here is idempotent: a machine
# that has what it needs is left alone, and apt-get runs only when a package
# is missing.

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

# Packages every build needs: cgo for SQLite.
BUILD_PACKAGES=(gcc libc6-dev pkg-config git ca-certificates)

# Packages the tests need beyond the build.
TEST_PACKAGES=(procps)

# build_station: the station binary into BIN_DIR.
build_station() {
	mkdir -p "$BIN_DIR"
	local commit
	commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
	(cd "$ROOT" && go build -trimpath -ldflags "-X main.version=dev -X main.commit=$commit" -o "$BIN_DIR/station" ./station/cmd/station)
}
