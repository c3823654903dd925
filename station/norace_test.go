//go:build !race

package station

const raceEnabled = false
