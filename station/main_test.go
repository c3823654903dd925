package station

import (
	"testing"

	"github.com/station-dev/station/station/dms/pgtest"
)

// TestMain stops the throwaway PostgreSQL cluster the README's DMS
// example starts, once the tests are over.
func TestMain(m *testing.M) { pgtest.Main(m) }
