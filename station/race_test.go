//go:build race

package station

// raceEnabled says the test binary was built with -race, so subprocess
// binaries are built the same way and share the build cache.
const raceEnabled = true
