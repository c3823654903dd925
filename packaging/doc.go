// Package packaging holds the station's Debian packaging: the nfpm
// configurations of the packages station and station-kiosk, the systemd
// unit, udev rules, sysusers and tmpfiles entries, maintainer scripts, the
// default configuration and the kiosk's X session. scripts/package builds
// the packages; docs/install.md says what they install.
//
// The package's test builds both packages with scripts/package, runs
// lintian on them, installs them into fresh Debian roots made by
// debootstrap (one with systemd, one without an init system), and checks
// there that station --version and station config check work, that the
// daemon starts as user station with the default configuration and serves
// its local API, and that purging keeps the journal.
package packaging
